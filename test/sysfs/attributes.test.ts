import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listEntries, readAttribute } from "../../src/sysfs/attributes.ts";

let root = "";
afterEach(() => rmSync(root, { recursive: true, force: true }));
const tree = () => {
  root = mkdtempSync(join(tmpdir(), "rds-sysfs-attr-"));
  mkdirSync(join(root, "block", "loop0"), { recursive: true });
  writeFileSync(join(root, "block", "loop0", "dev"), "7:0\n");
  writeFileSync(join(root, "block", "loop0", "size"), "");
  return root;
};

describe("readAttribute", () => {
  test.each([
    ["the kernel's trailing newline is gone", "block/loop0/dev", "7:0"],
    ["an empty attribute is empty, not absent", "block/loop0/size", ""],
    ["an absent attribute is undefined", "block/loop0/ro", undefined],
    ["a directory is not an attribute", "block/loop0", undefined],
    ["below an absent device", "block/loop9/dev", undefined],
  ])("%s", async (_what, path, want) => {
    expect(await readAttribute(join(tree(), path))).toBe(want);
  });
});

describe("listEntries", () => {
  test("names a directory's entries", async () => {
    expect((await listEntries(join(tree(), "block", "loop0"))).sort()).toEqual(["dev", "size"]);
  });
  test("an absent directory has none (a device that vanished mid-scan)", async () => {
    expect(await listEntries(join(tree(), "block", "loop9", "holders"))).toEqual([]);
  });
  test("a file is not a directory", async () => {
    expect(await listEntries(join(tree(), "block", "loop0", "dev"))).toEqual([]);
  });
});
