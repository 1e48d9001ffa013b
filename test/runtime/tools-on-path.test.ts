import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findOnPath, missingTools } from "../../src/runtime/tools-on-path.ts";

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "rds-csi-path-"));
  for (const d of ["a", "b", "c"]) mkdirSync(join(dir, d));
  writeFileSync(join(dir, "a", "tool"), "#!/bin/true\n");
  chmodSync(join(dir, "a", "tool"), 0o755);
  writeFileSync(join(dir, "a", "not-executable"), "");
  chmodSync(join(dir, "a", "not-executable"), 0o644);
  mkdirSync(join(dir, "a", "a-directory"));
  symlinkSync(join(dir, "a", "tool"), join(dir, "b", "linked"));
  symlinkSync(join(dir, "nowhere"), join(dir, "b", "dangling"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("findOnPath: execvp's lookup, no shell", () => {
  test("finds executables in PATH order, through symlinks, without needing sh on PATH", () => {
    const path = [join(dir, "c"), join(dir, "a"), join(dir, "b")].join(":");
    expect(findOnPath("tool", path)).toBe(join(dir, "a", "tool"));
    expect(findOnPath("linked", path)).toBe(join(dir, "b", "linked"));
    expect(findOnPath("sh", path)).toBeUndefined();
  });
  test("a non-executable file, a directory and a dangling link are not tools", () => {
    const path = [join(dir, "a"), join(dir, "b")].join(":");
    expect(missingTools(["not-executable", "a-directory", "dangling", "tool"], path)).toEqual([
      "not-executable",
      "a-directory",
      "dangling",
    ]);
  });
  test("a name with a slash is taken as it is; an empty PATH finds nothing else", () => {
    expect(findOnPath(join(dir, "a", "tool"), "")).toBe(join(dir, "a", "tool"));
    expect(findOnPath("tool", "")).toBeUndefined();
  });
});
