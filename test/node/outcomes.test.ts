/**
 * Helpers say what happened; the node picks the CSI code (node/outcomes.ts). The table covers each
 * semantic error; the mkfs case runs the real mkfs.xfs on a real loop device.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CommandFailedError } from "../../src/runtime/command-failed.ts";
import { createRunner, type ExecResult } from "../../src/runtime/exec.ts";
import { DomainError, invalidArgument } from "../../src/runtime/errors.ts";
import { ForeignDataError, GrowNeedsCapabilityError, makeFilesystem, SizeUnknownError } from "../../src/fs/mkfs.ts";
import { mountinfoTooLarge, MountTableError, parseMountinfo } from "../../src/mount/mountinfo.ts";
import { DirectoryNotEmptyError } from "../../src/mount/ops.ts";
import { StormRefusedError } from "../../src/mount/storm-guard.ts";
import { csiErrorOf } from "../../src/node/outcomes.ts";

const result = (over: Partial<ExecResult> = {}): ExecResult => ({
  command: "mount",
  args: [],
  durationMs: 1,
  exitCode: 32,
  signal: null,
  timedOut: false,
  aborted: false,
  stdout: "",
  stderr: "mount: failed",
  truncated: false,
  ...over,
});

const thrown = (f: () => unknown): unknown => {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("did not throw");
};

const kindOf = (e: unknown) => (e instanceof DomainError ? e.kind : `passed on: ${(e as Error).name}`);

describe("csiErrorOf", () => {
  test.each([
    ["a storm at the device", new StormRefusedError("device", 100, 100, "refusing to mount: d"), "resource-exhausted"],
    ["a storm at the target", new StormRefusedError("target", 100, 100, "refusing to mount: t"), "resource-exhausted"],
    [
      "a storm across the table",
      new StormRefusedError("table", 20_000, 20_000, "a mount storm is under way"),
      "unavailable",
    ],
    ["a failed command", new CommandFailedError(result(), "mount x"), "unavailable"],
    ["a command killed at its deadline", new CommandFailedError(result({ timedOut: true }), "mount x"), "unavailable"],
    ["data mkfs would not overwrite", new ForeignDataError(result({ command: "mkfs.xfs" }), "mkfs.xfs"), "unavailable"],
    ["a grow without CAP_SYS_RESOURCE", new GrowNeedsCapabilityError(result(), "resize2fs"), "failed-precondition"],
    ["a size nobody could read", new SizeUnknownError("cannot read the size"), "unavailable"],
    [
      "a request fault already decided",
      invalidArgument("volume_capability.mount.mount_flags", "x"),
      "invalid-argument",
    ],
    ["a directory to remove that is not empty", new DirectoryNotEmptyError("/k/pods/p/mount"), "failed-precondition"],
    ["a mount table read that failed or was cancelled", new MountTableError("unreadable", "x"), "unavailable"],
    ["a mount table past its size bound", mountinfoTooLarge("/proc/1/mountinfo"), "resource-exhausted"],
    ["a mount table line we cannot parse", thrown(() => parseMountinfo("garbage\n")), "internal"],
    ["an unexpected error", new TypeError("bug"), "passed on: TypeError"],
  ])("%s → %s", (_, e, want) => expect(kindOf(csiErrorOf(e))).toBe(want));

  test("the answer keeps the helper's message and the helper's error as its cause", () => {
    const storm = new StormRefusedError("device", 3, 3, "refusing to mount: device /dev/x (7:1) already has 3");
    const mapped = csiErrorOf(storm) as DomainError;
    expect({ message: mapped.message, cause: mapped.cause }).toEqual({ message: storm.message, cause: storm });
  });
});

describe("mkfs on a device that holds a filesystem (real mkfs.xfs, real loop device)", () => {
  const dir = mkdtempSync(join(tmpdir(), "rds-outcomes-"));
  const img = join(dir, "xfs.img");
  let loop = "";
  afterAll(() => {
    if (loop) execFileSync("losetup", ["-d", loop]);
    rmSync(dir, { recursive: true, force: true });
  });

  test("mkfs.xfs without force refuses: ForeignDataError, UNAVAILABLE to the CO, the filesystem untouched", async () => {
    // mkfs.xfs wants at least 300 MB; a sparse file costs nothing.
    execFileSync("truncate", ["-s", "320M", img]);
    loop = execFileSync("losetup", ["-f", "--show", img], { encoding: "utf8" }).trim();
    execFileSync("mkfs.xfs", ["-q", "-L", "keepme", loop]);
    const e = await makeFilesystem(loop, "xfs", { runner: createRunner(), timeoutMs: 60_000 }).catch((x) => x);
    expect(e).toBeInstanceOf(ForeignDataError);
    expect(kindOf(csiErrorOf(e))).toBe("unavailable");
    expect(execFileSync("blkid", ["-o", "value", "-s", "LABEL", loop], { encoding: "utf8" }).trim()).toBe("keepme");
  });
});
