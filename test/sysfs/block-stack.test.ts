/**
 * The stack walk on fabricated /sys/block trees (unit level; the VM suite walks a real one). Layout as
 * the kernel shows it: partitions are subdirectories named after the disk, stacked devices (dm, md)
 * are entries of `holders/` of what they are built on.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { partitionsOf, stackedDevs } from "../../src/sysfs/block-stack.ts";

/** name → its dev, partitions (name → dev) and holders (of the disk, or of one partition as "part:holder"). */
type Tree = Record<string, { dev?: string; parts?: Record<string, string>; holders?: string[] }>;

let root = "";
afterEach(() => rmSync(root, { recursive: true, force: true }));

function build(tree: Tree): string {
  root = mkdtempSync(join(tmpdir(), "rds-block-stack-"));
  for (const [name, d] of Object.entries(tree)) {
    const dir = join(root, "block", name);
    mkdirSync(join(dir, "holders"), { recursive: true });
    if (d.dev) writeFileSync(join(dir, "dev"), `${d.dev}\n`);
    for (const [part, dev] of Object.entries(d.parts ?? {})) {
      mkdirSync(join(dir, part, "holders"), { recursive: true });
      writeFileSync(join(dir, part, "dev"), `${dev}\n`);
    }
    for (const h of d.holders ?? []) {
      const [on, holder] = h.includes(":") ? h.split(":") : [undefined, h];
      mkdirSync(join(dir, ...(on ? [on] : []), "holders", holder!), { recursive: true });
    }
  }
  return root;
}

describe("stackedDevs", () => {
  const cases: [string, Tree, string, string[]][] = [
    ["a bare disk has nothing on top", { nvme0n1: { dev: "259:0" } }, "nvme0n1", []],
    [
      "partitions, not the disk itself",
      { nvme0n1: { dev: "259:0", parts: { nvme0n1p1: "259:1", nvme0n1p2: "259:2" } } },
      "nvme0n1",
      ["259:1", "259:2"],
    ],
    [
      "dm-crypt on the whole disk",
      { nvme0n1: { dev: "259:0", holders: ["dm-0"] }, "dm-0": { dev: "253:0" } },
      "nvme0n1",
      ["253:0"],
    ],
    [
      "LVM on a partition",
      {
        nvme0n1: { dev: "259:0", parts: { nvme0n1p2: "259:2" }, holders: ["nvme0n1p2:dm-1"] },
        "dm-1": { dev: "253:1" },
      },
      "nvme0n1",
      ["259:2", "253:1"],
    ],
    [
      "LVM on dm-crypt on the disk: the walk goes all the way up",
      {
        nvme0n1: { dev: "259:0", holders: ["dm-0"] },
        "dm-0": { dev: "253:0", holders: ["dm-1"] },
        "dm-1": { dev: "253:1" },
      },
      "nvme0n1",
      ["253:0", "253:1"],
    ],
    [
      "md over two disks, partitioned: reached from either member",
      {
        nvme0n1: { dev: "259:0", holders: ["md0"] },
        nvme1n1: { dev: "259:3", holders: ["md0"] },
        md0: { dev: "9:0", parts: { md0p1: "259:9" } },
      },
      "nvme1n1",
      ["9:0", "259:9"],
    ],
    [
      "two paths to one holder count it once",
      {
        nvme0n1: { dev: "259:0", parts: { nvme0n1p1: "259:1" }, holders: ["dm-0", "nvme0n1p1:dm-0"] },
        "dm-0": { dev: "253:0" },
      },
      "nvme0n1",
      ["259:1", "253:0"],
    ],
    [
      "a holder that vanished mid-walk (no dev) adds nothing, the rest still counts",
      { nvme0n1: { dev: "259:0", parts: { nvme0n1p1: "259:1" }, holders: ["dm-7"] } },
      "nvme0n1",
      ["259:1"],
    ],
    ["a device that is not there has nothing on top", { nvme0n1: { dev: "259:0" } }, "nvme5n1", []],
    [
      "partitions are read inside the disk's directory, not guessed from names in /sys/block",
      { nvme0n1: { dev: "259:0" }, nvme0n10: { dev: "259:10" } },
      "nvme0n1",
      [],
    ],
  ];
  test.each(cases)("%s", async (_what, tree, disk, want) => {
    expect([...(await stackedDevs(build(tree), disk))].sort()).toEqual([...want].sort());
  });

  test("a holder loop (not a kernel layout, but a corrupt tree) ends", async () => {
    const r = build({ nvme0n1: { dev: "259:0", holders: ["dm-0"] }, "dm-0": { dev: "253:0", holders: ["nvme0n1"] } });
    expect([...(await stackedDevs(r, "nvme0n1"))]).toContain("253:0");
  });
});

test("partitionsOf names the disk's partitions only", async () => {
  const r = build({ sda: { dev: "8:0", parts: { sda1: "8:1", sda2: "8:2" } } });
  expect((await partitionsOf(r, "sda")).sort()).toEqual(["sda1", "sda2"]);
});
