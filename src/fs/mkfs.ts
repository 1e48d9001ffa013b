import { CommandFailedError } from "../runtime/command-failed.ts";
import { completeStdout, describeFailure, ok, type CommandContext, type ExecResult } from "../runtime/exec.ts";

export const SUPPORTED_FS = ["ext4", "xfs"] as const;
export type FsType = (typeof SUPPORTED_FS)[number];

/** mkfs found something on the device and would not overwrite it: not formatting was the right outcome. */
export class ForeignDataError extends CommandFailedError {
  override readonly name = "ForeignDataError";
}

/** Growing a mounted ext4 needs CAP_SYS_RESOURCE, which this process lacks; the next stage grows it offline. */
export class GrowNeedsCapabilityError extends CommandFailedError {
  override readonly name = "GrowNeedsCapabilityError";
}

/** The filesystem's or the device's size could not be read, so whether to grow is unknown. */
export class SizeUnknownError extends Error {
  override readonly name = "SizeUnknownError";
}

/** mkfs.xfs's refusal without -f (measured here). mkfs.ext4 -q with no terminal on stdin overwrites without asking. */
const EXISTING = /appears to contain an existing filesystem|contains a .* file system/;

/**
 * Makes a filesystem. Without `force` deliberately no -F/-f: if something appeared on the device
 * since it was found blank, mkfs.xfs refuses (ForeignDataError), a second guard against formatting
 * data. mkfs.ext4 is no such guard: with -q and no terminal on stdin it formats over an existing
 * ext4 or xfs and exits 0 (measured on a loop device, e2fsprogs of Debian 12); only the probe guards
 * ext4. `force` is only for redoing a format this node itself started and never finished.
 */
export async function makeFilesystem(
  device: string,
  fsType: FsType,
  o: CommandContext & { force?: boolean },
): Promise<void> {
  const flag = o.force ? [fsType === "xfs" ? "-f" : "-F"] : [];
  const [cmd, args] = fsType === "xfs" ? ["mkfs.xfs", ["-q", ...flag, device]] : ["mkfs.ext4", ["-q", ...flag, device]];
  const r = await o.runner(cmd, args, { timeoutMs: o.timeoutMs, signal: o.signal, log: o.log, logLevel: "info" });
  if (ok(r)) return;
  if (!r.timedOut && EXISTING.test(r.stderr)) throw new ForeignDataError(r, `${cmd} on ${device}`);
  throw new CommandFailedError(r, `${cmd} on ${device}`);
}

/**
 * Grows the filesystem to the device: ext4 by device, xfs through its mount point. `offlineChecked`
 * (ext4 only) says a read-only check of this unmounted filesystem just came back clean: offline
 * resize2fs otherwise insists on its own `e2fsck -f` whenever the last mount is newer than the last
 * check, which is true of almost every used volume.
 */
export async function growFilesystem(
  device: string,
  mountPoint: string,
  fsType: FsType,
  o: CommandContext & { offlineChecked?: boolean },
): Promise<void> {
  const [cmd, args] =
    fsType === "xfs" ? ["xfs_growfs", [mountPoint]] : ["resize2fs", o.offlineChecked ? ["-f", device] : [device]];
  const r = await o.runner(cmd, args, { timeoutMs: o.timeoutMs, signal: o.signal, log: o.log, logLevel: "info" });
  if (ok(r)) return;
  if (fsType === "ext4" && /Permission denied to resize/i.test(r.stderr)) {
    throw new GrowNeedsCapabilityError(
      r,
      cmd,
      `resize2fs could not grow the mounted ext4 on ${device}: the driver lacks CAP_SYS_RESOURCE (add it to the node plugin's capabilities); the filesystem will be grown at its next NodeStageVolume`,
    );
  }
  throw new CommandFailedError(r, `${cmd} for ${device}`);
}

/**
 * Whether an ext4 filesystem is smaller than its device (by more than one block group's worth of
 * slack). Sizes the caller already knows (from blkid + e2fsck, from sysfs) spare the dumpe2fs and
 * blockdev children.
 */
export async function ext4SmallerThanDevice(
  device: string,
  o: CommandContext,
  known: { fsBytes?: number; devBytes?: number } = {},
): Promise<boolean> {
  const [fsBytes, devBytes] = await Promise.all([
    known.fsBytes ??
      (async () => {
        const fs = await o.runner("dumpe2fs", ["-h", device], { timeoutMs: o.timeoutMs, signal: o.signal, log: o.log });
        if (!ok(fs)) throw sizeUnreadable(fs, device);
        const field = (name: string) =>
          Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(completeStdout(fs, "dumpe2fs -h"))?.[1] ?? NaN);
        return field("Block count") * field("Block size");
      })(),
    known.devBytes ??
      (async () => {
        const dev = await o.runner("blockdev", ["--getsize64", device], {
          timeoutMs: o.timeoutMs,
          signal: o.signal,
          log: o.log,
        });
        if (!ok(dev)) throw sizeUnreadable(dev, device);
        return Number(completeStdout(dev, "blockdev --getsize64").trim());
      })(),
  ]);
  if (!Number.isFinite(fsBytes) || !Number.isFinite(devBytes))
    throw new SizeUnknownError(`cannot read the size of ext4 on ${device}`);
  // resize2fs rounds to whole blocks groups' alignment; a few MiB of slack is not worth a resize.
  return devBytes - fsBytes > 8 * 1024 * 1024;
}

const sizeUnreadable = (r: ExecResult, device: string) =>
  new CommandFailedError(r, r.command, `cannot compare filesystem and device size of ${device}: ${describeFailure(r)}`);
