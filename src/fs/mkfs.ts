import { describeFailure, ok, type Runner } from "../runtime/exec.ts";
import { unavailable } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";

export const SUPPORTED_FS = ["ext4", "xfs"] as const;
export type FsType = (typeof SUPPORTED_FS)[number];

export interface FsCommandOptions {
  runner: Runner;
  log?: Logger;
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Makes a filesystem. Deliberately without -F/-f: if something appeared on the device since
 * it was found blank, mkfs's own check refuses, a second guard against formatting data.
 */
export async function makeFilesystem(device: string, fsType: FsType, o: FsCommandOptions): Promise<void> {
  const [cmd, args] = fsType === "xfs" ? ["mkfs.xfs", ["-q", device]] : ["mkfs.ext4", ["-q", device]];
  const r = await o.runner(cmd, args, { timeoutMs: o.timeoutMs, signal: o.signal, log: o.log, logLevel: "info" });
  if (!ok(r)) throw unavailable(`${cmd} on ${device} failed: ${describeFailure(r)}`);
}

/** Grows the filesystem to the device: ext4 by device (online works), xfs through its mount point. */
export async function growFilesystem(device: string, mountPoint: string, fsType: FsType, o: FsCommandOptions): Promise<void> {
  const [cmd, args] = fsType === "xfs" ? ["xfs_growfs", [mountPoint]] : ["resize2fs", [device]];
  const r = await o.runner(cmd, args, { timeoutMs: o.timeoutMs, signal: o.signal, log: o.log, logLevel: "info" });
  if (!ok(r)) throw unavailable(`${cmd} for ${device} failed: ${describeFailure(r)}`);
}
