import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeDirectoryNoFollow } from "../../src/mount/ops.ts";
import { createRunner } from "../../src/runtime/exec.ts";

const base = mkdtempSync("/tmp/rds-ops-");
const o = { runner: createRunner(), timeoutMs: 10_000 };

afterAll(() => rmSync(base, { recursive: true, force: true }));

describe("makeDirectoryNoFollow", () => {
  test("missing: made (with its parents); a directory: left; a symlink to a directory or a file: in the way, nothing made", async () => {
    const made = join(base, "mk", "new dir", "$(touch pwned)");
    expect(await makeDirectoryNoFollow(made, o)).toBe("created");
    expect(statSync(made).isDirectory()).toBe(true);
    expect(await makeDirectoryNoFollow(made, o)).toBe("existed");
    const real = join(base, "mk", "real");
    mkdirSync(real);
    const link = join(base, "mk", "link");
    symlinkSync(real, link);
    expect(await makeDirectoryNoFollow(link, o)).toBe("in-the-way");
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    const dangling = join(base, "mk", "dangling");
    symlinkSync(join(base, "mk", "nowhere"), dangling);
    expect(await makeDirectoryNoFollow(dangling, o)).toBe("in-the-way");
    expect(existsSync(join(base, "mk", "nowhere"))).toBe(false);
    const file = join(base, "mk", "file");
    writeFileSync(file, "x");
    expect(await makeDirectoryNoFollow(file, o)).toBe("in-the-way");
    expect(await makeDirectoryNoFollow(join(file, "below"), o)).toBe("in-the-way");
    expect(existsSync(join(base, "pwned")) || existsSync("pwned")).toBe(false);
  });
});
