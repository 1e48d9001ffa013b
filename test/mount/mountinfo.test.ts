import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseMountinfo, readMountinfo, unescapeMountField } from "../../src/mount/mountinfo.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { DeadlineError } from "../../src/runtime/errors.ts";

const runner = createRunner();

describe("parseMountinfo", () => {
  test("shared root with one optional field", () => {
    const [e] = parseMountinfo("22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro\n");
    expect(e).toEqual({
      id: 22,
      parentId: 1,
      major: 259,
      minor: 2,
      dev: "259:2",
      root: "/",
      mountPoint: "/",
      options: "rw,relatime",
      optionalFields: ["shared:1"],
      fsType: "ext4",
      source: "/dev/nvme0n1p2",
      superOptions: "rw,errors=remount-ro",
    });
  });

  test("no optional fields, then several", () => {
    const es = parseMountinfo(
      "30 22 0:26 / /proc rw,nosuid - proc proc rw\n" +
        "31 22 0:27 / /mnt/x rw shared:5 master:3 propagate_from:2 unbindable - tmpfs none rw,size=10k\n",
    );
    expect(es[0]!.optionalFields).toEqual([]);
    expect(es[0]!.fsType).toBe("proc");
    expect(es[1]!.optionalFields).toEqual(["shared:5", "master:3", "propagate_from:2", "unbindable"]);
    expect(es[1]!.source).toBe("none");
    expect(es[1]!.superOptions).toBe("rw,size=10k");
  });

  test("octal escapes for space, tab, newline and backslash in root, mount point and source", () => {
    const line = "40 22 8:1 /data\\040dir /mnt/a\\040b\\011c\\012d\\134e rw - xfs /dev/my\\040disk rw\n";
    const [e] = parseMountinfo(line);
    expect(e!.root).toBe("/data dir");
    expect(e!.mountPoint).toBe("/mnt/a b\tc\nd\\e");
    expect(e!.source).toBe("/dev/my disk");
  });

  test("bind mount of a subdirectory keeps its root", () => {
    const [e] = parseMountinfo("50 22 259:2 /var/lib/data /srv/data rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n");
    expect(e!.root).toBe("/var/lib/data");
    expect(e!.mountPoint).toBe("/srv/data");
  });

  test("a lone backslash that is not an escape stays as it is", () => {
    expect(unescapeMountField("a\\9b")).toBe("a\\9b");
    expect(unescapeMountField("end\\")).toBe("end\\");
    expect(unescapeMountField("\\040")).toBe(" ");
  });

  test("blank lines and a missing trailing newline are fine", () => {
    const es = parseMountinfo("\n30 22 0:26 / /proc rw - proc proc rw\n\n31 22 0:27 / /sys rw - sysfs sysfs rw");
    expect(es.map((e) => e.mountPoint)).toEqual(["/proc", "/sys"]);
  });

  test("a line without the separator is reported with its line number", () => {
    expect(() => parseMountinfo("30 22 0:26 / /proc rw - proc proc rw\n31 22 0:27 / /sys rw sysfs sysfs rw\n")).toThrow(
      /line 2/,
    );
    expect(() => parseMountinfo("31 22 0:27 / /sys rw -\n")).toThrow(/line 1/);
    expect(() => parseMountinfo("garbage\n")).toThrow(/line 1/);
  });

  test("agrees with findmnt on this machine's real mount table", async () => {
    const text = readFileSync("/proc/self/mountinfo", "utf8");
    const ours = parseMountinfo(text);
    const r = await runner(
      "findmnt",
      ["--raw", "--noheadings", "-o", "ID,TARGET,FSTYPE", "-F", "/proc/self/mountinfo"],
      { timeoutMs: 10_000 },
    );
    expect(r.exitCode).toBe(0);
    const theirs = r.stdout
      .trim()
      .split("\n")
      .map((l) => l.split(" "));
    expect(ours.length).toBe(theirs.length);
    // findmnt --raw escapes unusual characters as \x..; compare ids and types which never need escaping.
    expect(ours.map((e) => `${e.id} ${e.fsType}`).sort()).toEqual(theirs.map((t) => `${t[0]} ${t[2]}`).sort());
  });
});

describe("readMountinfo", () => {
  test("reads this process's table through a child and parses it", async () => {
    const es = await readMountinfo({ runner });
    expect(es.some((e) => e.mountPoint === "/")).toBe(true);
  });

  test("reads a fabricated proc root", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mi-"));
    try {
      mkdirSync(join(dir, "42"));
      writeFileSync(join(dir, "42", "mountinfo"), "30 22 0:26 / /x\\040y rw - proc proc rw\n");
      const es = await readMountinfo({ runner, procRoot: dir, pid: 42 });
      expect(es[0]!.mountPoint).toBe("/x y");
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("a missing file is an error naming the path", async () => {
    await expect(readMountinfo({ runner, procRoot: "/nonexistent-proc", pid: 1 })).rejects.toThrow(
      /nonexistent-proc\/1\/mountinfo/,
    );
  });

  test("a read that blocks is abandoned at the deadline", async () => {
    // A FIFO with no writer blocks `cat` in open(), like a kernel stuck generating the table.
    const dir = mkdtempSync(join(tmpdir(), "mi-"));
    try {
      mkdirSync(join(dir, "7"));
      const mk = await runner("mkfifo", [join(dir, "7", "mountinfo")], { timeoutMs: 5000 });
      expect(mk.exitCode).toBe(0);
      const started = performance.now();
      const err = await readMountinfo({ runner, procRoot: dir, pid: 7, timeoutMs: 300 }).catch((e) => e);
      expect(err).toBeInstanceOf(DeadlineError);
      expect(performance.now() - started).toBeLessThan(3000);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
