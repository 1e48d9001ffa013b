import type { BreakerRegistry } from "../runtime/breakers.ts";
import { failedPrecondition, unavailable } from "../runtime/errors.ts";
import { describeFailure, ok, type CommandContext, type Runner, type RunnerStats } from "../runtime/exec.ts";
import { exclusive as exclusiveKey, type KeyLock } from "../runtime/key-lock.ts";
import type { Logger } from "../runtime/log.ts";
import {
  MAX_MOUNTINFO_BYTES,
  mountinfoPathOf,
  mountinfoTooLarge,
  parseMountinfo,
  type MountEntry,
} from "../mount/mountinfo.ts";
import { pathKind, removeEmptyDirectory, removePath, unmount, type PathKind } from "../mount/ops.ts";
import type { ProbeRegistry } from "../mount/probe.ts";
import { assertTableSane } from "../mount/storm-guard.ts";
import type { AttachedDevice, Connectors, VolumeTarget } from "./connector.ts";
import { RESOLVE_SH, type KubeletPaths } from "./kubelet-paths.ts";
import { nodeRequestSchemas } from "./requests.ts";
import type { StagingRecord, StagingRecords } from "./staging-records.ts";

export interface NodeTimeouts {
  mountinfoMs: number;
  healthCheckMs: number;
  mkfsMs: number;
  mountMs: number;
  growMs: number;
  probeMs: number;
  /** stat, mkdir, mknod, blkid and other short commands. */
  commandMs: number;
}

export const DEFAULT_NODE_TIMEOUTS: NodeTimeouts = {
  mountinfoMs: 10_000,
  healthCheckMs: 120_000,
  mkfsMs: 300_000,
  mountMs: 60_000,
  growMs: 120_000,
  probeMs: 5_000,
  commandMs: 15_000,
};

export interface NodeServiceDeps {
  runner: Runner & Partial<RunnerStats>;
  log: Logger;
  nodeName: string;
  hostNqn?: string;
  /** 0: no limit reported. */
  maxVolumes: number;
  connectors: Connectors;
  records: StagingRecords;
  breakers: BreakerRegistry;
  locks: KeyLock;
  probes: ProbeRegistry;
  procRoot: string;
  stormThreshold: number;
  stormTotal: number;
  timeouts?: Partial<NodeTimeouts>;
  /**
   * NQN a volume staged by the Go driver would have (no staging record exists for it). Unstage
   * uses it to disconnect after an upgrade; the connector's NQN gate still applies.
   */
  legacyNqnFor?: (volumeId: string) => string | undefined;
  /** Every path a Node RPC names must lie inside the kubelet dir (see kubelet-paths.ts). */
  paths: KubeletPaths;
  /** The file backend's directory: loop volumes' backing files must sit directly in it. */
  fileDir: string;
}

/** `sh -c` script: the physical path of each of "$@" (after the mountinfo path in $1), a NUL, then the mount table. */
const CONFINE_AND_READ = `${RESOLVE_SH}
mi=$1; shift
for p; do resolve "$p"; done
printf "\\0"; exec cat -- "$mi"`;

/** Stacked mounts at one path are unmounted one by one; more than this is a storm for gc. */
const MAX_UNMOUNT_ROUNDS = 5;

export function targetOf(r: StagingRecord): VolumeTarget {
  return {
    volumeId: r.volume_id,
    transport: r.transport,
    nqn: r.nqn,
    address: r.nvme_address,
    port: r.nvme_port,
    ctrlLossTmo: r.ctrl_loss_tmo,
    reconnectDelay: r.reconnect_delay,
    keepAliveTmo: r.keep_alive_tmo,
    backingFile: r.backing_file,
  };
}

export const mountsAt = (mounts: readonly MountEntry[], path: string) => mounts.filter((m) => m.mountPoint === path);

/**
 * What every Node RPC pair shares: the deps, the deadlines, the request schemas, the per-volume
 * lock, the mount-table pre-flight and the rules about which paths and mounts are this volume's.
 */
export function createNodeContext(deps: NodeServiceDeps) {
  const t: NodeTimeouts = { ...DEFAULT_NODE_TIMEOUTS, ...deps.timeouts };
  const ops = (timeoutMs = t.commandMs, log = deps.log): CommandContext => ({ runner: deps.runner, log, timeoutMs });
  const schemas = nodeRequestSchemas({ paths: deps.paths, fileDir: deps.fileDir });

  /** Operations on one volume are exclusive: a second one is ABORTED (the CO retries). */
  const exclusive = <T>(volumeId: string, op: string, fn: () => Promise<T>): Promise<T> =>
    exclusiveKey(
      deps.locks,
      volumeId,
      `an operation on volume ${volumeId} is already in progress; retry later (${op})`,
      fn,
    );

  function refuseWhileStuck(): void {
    const stuck = deps.runner.stuck?.() ?? 0;
    if (stuck > 0) {
      throw unavailable(
        `${stuck} earlier command(s) could not be killed (likely stuck in the kernel, D state); refusing to start more mount work; run rds-csi doctor`,
      );
    }
  }

  /**
   * The RPC's path check (kubelet-paths.ts: `realpath -m` of the kubelet dir and each path's parent)
   * and its mount-table read, in one child under one deadline, then the pre-flight refusals. Both
   * are reads that can block (a hung mount above a kubelet path; the namespace lock a hung mount
   * holds while mountinfo waits on it), so both stay out of this process (DESIGN.md, principles 1
   * and 2); sharing the child halves their cost (scripts/bench-node.ts). The paths are passed as
   * arguments, never written into the script.
   */
  async function confineAndReadMounts(fields: Record<string, string>, signal?: AbortSignal): Promise<MountEntry[]> {
    refuseWhileStuck();
    const c = deps.paths.confinement(fields);
    const mountinfo = mountinfoPathOf({ procRoot: deps.procRoot });
    const timeoutMs = Math.max(t.mountinfoMs, t.commandMs);
    const r = await deps.runner("sh", ["-c", CONFINE_AND_READ, "sh", mountinfo, ...c.paths], {
      timeoutMs,
      maxOutputBytes: MAX_MOUNTINFO_BYTES,
      log: deps.log,
      ...(signal ? { signal } : {}),
    });
    if (r.timedOut)
      throw unavailable(
        `${c.what} and reading the mount table did not finish within ${timeoutMs} ms; the kubelet dir or the mount table may be hung; run rds-csi doctor`,
      );
    // realpath's answer ends where the NUL is; no path and no mountinfo line holds one.
    const split = r.stdout.indexOf("\0");
    if (!ok(r) || split === -1) {
      const what = split === -1 ? c.what : `reading ${mountinfo}`;
      throw unavailable(`${what} ${r.aborted ? "was cancelled" : "failed"}: ${describeFailure(r)}`);
    }
    if (r.truncated) throw mountinfoTooLarge(mountinfo);
    c.check(r.stdout.slice(0, split).split("\n"));
    const mounts = parseMountinfo(r.stdout.slice(split + 1));
    assertTableSane(mounts, deps.stormTotal);
    return mounts;
  }

  /**
   * Unmounts everything stacked at path. The table the RPC read up front says how many there are; a
   * successful umount removes exactly the top one, so the table is not read again after each.
   */
  async function unmountAll(path: string, log: Logger, mounts: MountEntry[]): Promise<MountEntry[]> {
    const stacked = mountsAt(mounts, path).length;
    if (stacked > MAX_UNMOUNT_ROUNDS)
      throw failedPrecondition(`${path} has ${stacked} mounts stacked; run rds-csi doctor and rds-csi gc`);
    for (let i = 0; i < stacked; i++) {
      await unmount(path, ops(t.mountMs, log));
      mounts.splice(
        mounts.findLastIndex((m) => m.mountPoint === path),
        1,
      );
    }
    return mounts;
  }

  /**
   * The RPC's pre-flight child (confineAndReadMounts) and its reads of the staging records (local
   * files the child does not need) at the same time, instead of one after the other. The child's
   * refusal comes first, as when they ran in turn.
   */
  async function preflight(
    fields: Record<string, string>,
    volumeId: string,
    signal?: AbortSignal,
  ): Promise<{ mounts: MountEntry[]; record: StagingRecord | null; others: StagingRecord[] }> {
    const [mounts, records] = await Promise.allSettled([
      confineAndReadMounts(fields, signal),
      Promise.all([deps.records.read(volumeId), otherRecords(volumeId)]),
    ]);
    if (mounts.status === "rejected") throw mounts.reason;
    if (records.status === "rejected") throw records.reason;
    return { mounts: mounts.value, record: records.value[0], others: records.value[1] };
  }

  /** Every staging record but this volume's: who else claims a path or a backing file. */
  async function otherRecords(volumeId: string): Promise<StagingRecord[]> {
    return (await deps.records.list()).filter((r) => r.volume_id !== volumeId);
  }

  /** A path another volume stages or publishes at is never acted on for this one. */
  function refuseClaimed(others: readonly StagingRecord[], path: string, field: string): void {
    for (const r of others) {
      if (r.staging_path === path || r.publications.some((p) => p.target_path === path)) {
        throw failedPrecondition(`${field} ${path} belongs to volume ${r.volume_id} on this node; not touching it`);
      }
    }
  }

  /** The device of a volume this node has no record of: the Go driver's, found by the NQN its id implies. */
  async function legacyDevice(volumeId: string): Promise<{ volume: VolumeTarget; device: AttachedDevice } | null> {
    const nqn = deps.legacyNqnFor?.(volumeId);
    if (!nqn) return null;
    const volume: VolumeTarget = { volumeId, transport: "nvme-tcp", nqn };
    const device = await deps.connectors["nvme-tcp"].find(volume);
    return device ? { volume, device } : null;
  }

  /**
   * Mounts at `path` may only be removed for this volume when its record owns the path or every
   * one of them is of the volume's own device. Anything else mounted there is someone else's.
   */
  function refuseForeignMounts(
    mounts: readonly MountEntry[],
    path: string,
    volumeId: string,
    device: AttachedDevice | null | undefined,
    field: string,
  ) {
    const here = mountsAt(mounts, path);
    const foreign = here.filter((m) => !device || m.dev !== device.dev);
    if (foreign.length > 0) {
      throw failedPrecondition(
        `${field} ${path} has a mount that is not volume ${volumeId}'s (${foreign[0]!.source}, ${foreign[0]!.dev}); not unmounting it`,
      );
    }
  }

  /**
   * Removes what this driver made at a path, after it is unmounted: an empty directory, or a
   * device node of the volume's device. Anything else (a file, a symlink, a foreign device node)
   * is left in place and refused.
   */
  async function removeOwned(path: string, allowed: { directory?: boolean; blockDev?: string }, log: Logger) {
    const o = ops(t.commandMs, log);
    // The common case (a directory) in one child: rmdir removes only an empty directory and says what else it found.
    if (allowed.directory && (await removeEmptyDirectory(path, o)) !== "not-a-directory") return;
    const k: PathKind = await pathKind(path, o);
    if (k.kind === "missing") return;
    if (k.kind === "block" && allowed.blockDev !== undefined && k.dev === allowed.blockDev) return removePath(path, o);
    const what = k.kind === "block" ? `a device node for ${k.dev}` : k.kind === "other" ? k.type : k.kind;
    throw failedPrecondition(`${path} is ${what}, which this driver did not create there; not removing it`);
  }

  return {
    deps,
    t,
    ops,
    schemas,
    exclusive,
    confineAndReadMounts,
    preflight,
    unmountAll,
    otherRecords,
    refuseClaimed,
    legacyDevice,
    refuseForeignMounts,
    removeOwned,
  };
}

export type NodeContext = ReturnType<typeof createNodeContext>;
