import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { CommandFailedError, makeDirectoryIfMissing, unmountThenRemoveDirectory } from "../../src/mount/ops.ts";
import { DomainError } from "../../src/runtime/errors.ts";
import { createRunner } from "../../src/runtime/exec.ts";

const base = mkdtempSync("/tmp/rds-ops-");
const o = { runner: createRunner(), timeoutMs: 10_000 };
const mounted = (p: string) =>
  readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === p.replace(/ /g, "\\040"));

afterAll(() => {
  // Whatever a failed test left mounted below base, deepest first.
  const left = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => (l.split(" ")[4] ?? "").replace(/\\040/g, " "))
    .filter((mp) => mp.startsWith(`${base}/`))
    .reverse();
  for (const mp of left) execFileSync("umount", ["-l", mp]);
  rmSync(base, { recursive: true, force: true });
});

// Names a shell would act on if they ever reached the script rather than "$1".
for (const name of ["plain", "with space", "$(touch pwned)", "a'b\"c;rm -rf x", "-n"]) {
  test(`umount then rmdir in one child: ${JSON.stringify(name)} is unmounted and its empty directory removed`, async () => {
    const dir = join(base, name);
    mkdirSync(dir, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "t", dir]);
    writeFileSync(join(dir, "inside-the-mount"), "x");
    expect(await unmountThenRemoveDirectory(dir, o)).toBe("removed");
    expect(mounted(dir)).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(join(base, "pwned")) || existsSync("pwned")).toBe(false);
  });
}

test("nothing mounted: umount fails, nothing is removed", async () => {
  const dir = join(base, "not-mounted");
  mkdirSync(dir);
  const e = await unmountThenRemoveDirectory(dir, o).catch((x) => x);
  expect(e).toBeInstanceOf(CommandFailedError);
  expect((e as Error).message).toContain(`umount ${dir}`);
  expect(existsSync(dir)).toBe(true);
});

test("the directory under the mount holds something: unmounted, left in place, FAILED_PRECONDITION", async () => {
  const dir = join(base, "not-empty");
  mkdirSync(dir);
  writeFileSync(join(dir, "under-the-mount"), "x");
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "t", dir]);
  const e = await unmountThenRemoveDirectory(dir, o).catch((x) => x);
  expect(e).toBeInstanceOf(DomainError);
  expect((e as DomainError).kind).toBe("failed-precondition");
  expect(mounted(dir)).toBe(false);
  expect(existsSync(join(dir, "under-the-mount"))).toBe(true);
});

test("a file bind-mounted onto a file: unmounted, then reported as no directory and not removed", async () => {
  const src = join(base, "src-file");
  const file = join(base, "file-target");
  writeFileSync(src, "s");
  writeFileSync(file, "f");
  execFileSync("mount", ["--bind", src, file]);
  expect(await unmountThenRemoveDirectory(file, o)).toBe("not-a-directory");
  expect(mounted(file)).toBe(false);
  expect(readFileSync(file, "utf8")).toBe("f");
});

describe("makeDirectoryIfMissing", () => {
  test("missing: made (with its parents); a directory: left; a symlink to a directory or a file: in the way, nothing made", async () => {
    const made = join(base, "mk", "new dir", "$(touch pwned)");
    expect(await makeDirectoryIfMissing(made, o)).toBe("created");
    expect(statSync(made).isDirectory()).toBe(true);
    expect(await makeDirectoryIfMissing(made, o)).toBe("existed");
    const real = join(base, "mk", "real");
    mkdirSync(real);
    const link = join(base, "mk", "link");
    symlinkSync(real, link);
    expect(await makeDirectoryIfMissing(link, o)).toBe("in-the-way");
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const dangling = join(base, "mk", "dangling");
    symlinkSync(join(base, "mk", "nowhere"), dangling);
    expect(await makeDirectoryIfMissing(dangling, o)).toBe("in-the-way");
    expect(existsSync(join(base, "mk", "nowhere"))).toBe(false);
    const file = join(base, "mk", "file");
    writeFileSync(file, "x");
    expect(await makeDirectoryIfMissing(file, o)).toBe("in-the-way");
    expect(await makeDirectoryIfMissing(join(file, "below"), o)).toBe("in-the-way");
    expect(existsSync(join(base, "pwned")) || existsSync("pwned")).toBe(false);
  });
});
