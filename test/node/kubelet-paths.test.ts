/**
 * RESOLVE_SH resolves paths with shell builtins only (no realpath child). It must agree with
 * `realpath -m` wherever a path is accepted, and refuse what cannot be followed. Real directories
 * and symlinks in a temp dir; realpath -m run on the same paths is the reference.
 */
import { afterAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RESOLVE_SH } from "../../src/node/kubelet-paths.ts";

const base = realpathSync(mkdtempSync(join(tmpdir(), "rds-resolve-")));
afterAll(() => rmSync(base, { recursive: true, force: true }));
mkdirSync(join(base, "k", "pods"), { recursive: true });
mkdirSync(join(base, "outside"));
writeFileSync(join(base, "k", "pods", "file"), "");
symlinkSync(join(base, "outside"), join(base, "k", "pods", "escape"));
symlinkSync(join(base, "k"), join(base, "k-link"));
symlinkSync("/nonexistent-target", join(base, "k", "pods", "dangling"));

const resolve = (paths: string[]) =>
  execFileSync("sh", ["-c", `${RESOLVE_SH}\nfor p; do resolve "$p"; done`, "sh", ...paths], { encoding: "utf8" })
    .split("\n")
    .slice(0, paths.length);
const realpathM = (paths: string[]) =>
  execFileSync("realpath", ["-m", "--", ...paths], { encoding: "utf8" })
    .split("\n")
    .slice(0, paths.length);

test("agrees with realpath -m: existing, not yet existing, through a symlinked dir, through a file, the root", () => {
  const paths = [
    join(base, "k"),
    join(base, "k", "pods"),
    join(base, "k", "pods", "new", "deeper"),
    join(base, "k", "pods", "escape"),
    join(base, "k", "pods", "escape", "x"),
    join(base, "k-link", "pods", "y"),
    join(base, "k", "pods", "file", "x"),
    join(base, "k", "pods", "with space"),
    "/",
  ];
  expect(resolve(paths)).toEqual(realpathM(paths));
  // The escape is visible: the resolved parent is outside the written one.
  expect(resolve([join(base, "k", "pods", "escape", "x")])).toEqual([join(base, "outside", "x")]);
});

test("a symlink cd cannot follow (dangling) resolves to no path at all, so the request is refused", () => {
  const [line] = resolve([join(base, "k", "pods", "dangling", "x")]);
  expect(line).toStartWith("(a symlink that does not lead to a directory:");
});
