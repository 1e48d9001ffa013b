import type { BreakerRegistry } from "../runtime/breakers.ts";
import {
  alreadyExists,
  DomainError,
  failedPrecondition,
  invalidArgument,
  isDeadlineError,
  notFound,
  outOfRange,
  unavailable,
  aborted,
} from "../runtime/errors.ts";
import type { Runner, RunnerStats } from "../runtime/exec.ts";
import { exclusive as exclusiveKey, type KeyLock } from "../runtime/key-lock.ts";
import type { Logger } from "../runtime/log.ts";
import { checkFilesystem } from "../fs/health-check.ts";
import { ext4SmallerThanDevice, growFilesystem, makeFilesystem, type FsType } from "../fs/mkfs.ts";
import { probeFilesystem } from "../fs/probe-filesystem.ts";
import { readMountinfo, type MountEntry } from "../mount/mountinfo.ts";
import {
  bindMount,
  refusedMountOptions,
  remountBind,
  ensureDirectory,
  makeBlockNode,
  makeDirectory,
  mountDevice,
  pathKind,
  removeEmptyDirectory,
  removePath,
  unmount,
  type OpsOptions,
  type PathKind,
} from "../mount/ops.ts";
import type { ProbeRegistry } from "../mount/probe.ts";
import { assertNoStorm, assertTableSane } from "../mount/storm-guard.ts";
import type { AttachedDevice, Connectors, VolumeTarget } from "./connector.ts";
import type { KubeletPaths } from "./kubelet-paths.ts";
import { SINGLE_WRITER_MODES } from "../csi/capabilities.ts";
import { parseCapability, requireString, type Capability } from "./requests.ts";
import type { StagingRecord, StagingRecords } from "./staging-records.ts";
import { parseVolumeContext } from "./volume-context.ts";
import { filesystemStats, withTransportProblem } from "./volume-stats.ts";
import { crashPoint } from "../runtime/crash-points.ts";

export const TOPOLOGY_KEY = "topology.rds.csi.srvlab.io/node";

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

type Req = any;
/** What a Node RPC takes from the call beside its request (csi/server.ts's RpcContext). */
type RpcSignal = { signal?: AbortSignal };

const NODE_CAPABILITIES = [
  "STAGE_UNSTAGE_VOLUME",
  "EXPAND_VOLUME",
  "GET_VOLUME_STATS",
  "VOLUME_CONDITION",
  "SINGLE_NODE_MULTI_WRITER",
];
/** ext4's driver mounts its ancestors too; asking for ext4 on an ext3 volume is fine. */
const COMPATIBLE_FS: Record<FsType, string[]> = { ext4: ["ext4", "ext3", "ext2"], xfs: ["xfs"] };
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

/** Compares what the CO asks now with what was staged; differences are ALREADY_EXISTS. */
function stagingConflict(r: StagingRecord, t: VolumeTarget, cap: Capability, stagingPath: string): string | null {
  if (r.staging_path !== stagingPath) return `already staged at ${r.staging_path}`;
  if (r.access_type !== cap.accessType) return `already staged as ${r.access_type}`;
  if (cap.accessType === "mount" && r.fs_type !== cap.fsType) return `already staged with fs_type ${r.fs_type}`;
  if (r.transport !== t.transport) return `already staged over ${r.transport}`;
  if ((r.nqn ?? "") !== (t.nqn ?? "") || (r.backing_file ?? "") !== (t.backingFile ?? ""))
    return "already staged from a different source";
  return null;
}

/**
 * The CSI Node service. Every RPC is idempotent; operations on one volume are exclusive
 * (a second → ABORTED) while different volumes run in parallel. Error paths never tear down:
 * what a failed stage set up stays, and teardown happens only in Unpublish/Unstage.
 */
export function createNodeService(deps: NodeServiceDeps) {
  const t = { ...DEFAULT_NODE_TIMEOUTS, ...deps.timeouts };
  const ops = (timeoutMs = t.commandMs, log = deps.log): OpsOptions => ({ runner: deps.runner, log, timeoutMs });

  const exclusive = <T>(volumeId: string, op: string, fn: () => Promise<T>): Promise<T> =>
    exclusiveKey(
      deps.locks,
      volumeId,
      `an operation on volume ${volumeId} is already in progress; retry later (${op})`,
      fn,
    );

  /** Reads the mount table and refuses when mounting would hang or add to a storm. */
  async function preflight(signal?: AbortSignal): Promise<MountEntry[]> {
    const stuck = deps.runner.stuck?.() ?? 0;
    if (stuck > 0) {
      throw unavailable(
        `${stuck} earlier command(s) could not be killed (likely stuck in the kernel, D state); refusing to start more mount work; run rds-csi doctor`,
      );
    }
    let mounts: MountEntry[];
    try {
      mounts = await readMountinfo({
        runner: deps.runner,
        procRoot: deps.procRoot,
        timeoutMs: t.mountinfoMs,
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if (isDeadlineError(e))
        throw unavailable(
          `the mount table could not be read within ${t.mountinfoMs} ms; mount operations are likely to hang; run rds-csi doctor`,
        );
      throw e;
    }
    assertTableSane(mounts, deps.stormTotal);
    return mounts;
  }

  const mountsAt = (mounts: readonly MountEntry[], path: string) => mounts.filter((m) => m.mountPoint === path);

  /**
   * Unmounts everything stacked at path. The table read once up front says how many there are; a
   * successful umount removes exactly the top one, so the table is not read again after each.
   */
  async function unmountAll(path: string, log: Logger, known?: MountEntry[]): Promise<MountEntry[]> {
    // A table the RPC has just read is used as it is; reading it again would only repeat the child.
    const mounts = known ?? (await preflight());
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

  const withVolumeBreaker = <T>(volumeId: string, fn: () => Promise<T>): Promise<T> =>
    deps.breakers.execute(`volume:${volumeId}`, fn);

  /** Health check, mkfs when certain, mount, grow: the stage path the breaker watches. */
  async function stageFilesystem(
    record: StagingRecord,
    device: AttachedDevice,
    cap: Capability,
    mounts: MountEntry[],
    log: Logger,
  ) {
    const stagingPath = record.staging_path;
    assertNoStorm(mounts, { dev: device.dev, target: stagingPath, source: device.devicePath }, deps.stormThreshold);
    const content = await probeFilesystem(device.devicePath, { runner: deps.runner, log, timeoutMs: t.commandMs });
    let fsType: string = cap.fsType;
    let grow = false;
    let fsBytes: number | undefined;
    const format = async (again: boolean) => {
      // Written before mkfs runs: after a crash mid-format the retry knows the half-written
      // filesystem is this node's own and may format again. Foreign data never carries this mark.
      record.formatting = { device: device.devicePath, fs_type: cap.fsType, started_at: new Date().toISOString() };
      await deps.records.write(record);
      await makeFilesystem(device.devicePath, cap.fsType, {
        runner: deps.runner,
        log,
        timeoutMs: t.mkfsMs,
        force: again,
      });
      crashPoint("node.stage.formatted");
      delete record.formatting;
      await deps.records.write(record);
    };
    if (record.formatting && content.state !== "unknown") {
      log.warn(
        {
          device: device.devicePath,
          fs_type: cap.fsType,
          found: content.state,
          started_at: record.formatting.started_at,
        },
        "a format of this device started by this node never finished (crash); formatting it again",
      );
      await format(true);
    } else
      switch (content.state) {
        case "filesystem": {
          if (!COMPATIBLE_FS[cap.fsType].includes(content.type)) {
            throw failedPrecondition(
              `volume ${record.volume_id} holds a ${content.type} filesystem but the capability asks for ${cap.fsType}; not mounting, not formatting`,
            );
          }
          fsType = content.type;
          const verdict = await checkFilesystem(device.devicePath, fsType, {
            runner: deps.runner,
            log,
            timeoutMs: t.healthCheckMs,
          });
          if (!verdict.healthy) {
            if (verdict.timedOut) throw unavailable(`health check of ${device.devicePath}: ${verdict.verdict}`);
            log.error(
              { device: device.devicePath, verdict: verdict.verdict },
              "filesystem failed its read-only check; not mounting",
            );
            throw failedPrecondition(
              `filesystem on ${device.devicePath} (volume ${record.volume_id}) failed its read-only check: ${verdict.verdict}; repair it offline (fsck) before use`,
            );
          }
          if (verdict.warning)
            log.warn({ device: device.devicePath, warning: verdict.warning }, "health check passed with a warning");
          // A forced offline resize is only safe on a filesystem the check found fully clean (no journal to replay).
          grow = fsType === "xfs" || !verdict.warning;
          if (verdict.blocks && content.blockSize) fsBytes = verdict.blocks * content.blockSize;
          break;
        }
        case "none":
          log.info({ device: device.devicePath, fs_type: cap.fsType }, "device is blank: making a filesystem");
          await format(false);
          break;
        case "data": {
          // Only for the operator's message: a checker hunting backup superblocks on a big device is slow.
          const verdict = await checkFilesystem(device.devicePath, cap.fsType, {
            runner: deps.runner,
            log,
            timeoutMs: Math.min(t.healthCheckMs, 15_000),
          });
          const said = verdict.healthy ? "the checker found nothing wrong" : verdict.verdict;
          throw failedPrecondition(
            `device ${device.devicePath} (volume ${record.volume_id}) holds data but no recognisable filesystem (${content.reason}); refusing to format it; ${cap.fsType} check: ${said}`,
          );
        }
        case "unknown":
          throw unavailable(
            `could not tell whether ${device.devicePath} holds a filesystem (${content.reason}); not formatting; retry later`,
          );
      }
    if ((await ensureDirectory(stagingPath, "staging_target_path", ops(t.commandMs, log))) === "created") {
      record.created_staging_dir = true;
      await deps.records.write(record);
    }
    // The backend may have grown the volume while it was not staged anywhere. ext4 grows best
    // before the mount (offline resize needs no extra capability); xfs only grows mounted.
    const growOpts = { runner: deps.runner, log, timeoutMs: t.growMs };
    if (
      grow &&
      fsType !== "xfs" &&
      (await ext4SmallerThanDevice(device.devicePath, growOpts, { fsBytes, devBytes: device.sizeBytes }))
    ) {
      await growFilesystem(device.devicePath, stagingPath, "ext4", { ...growOpts, offlineChecked: true });
    }
    await mountDevice(device.devicePath, stagingPath, fsType, cap.mountFlags, ops(t.mountMs, log)).catch((e) => {
      throw requestFault(e, cap.mountFlags);
    });
    crashPoint("node.stage.mounted");
    if (grow && fsType === "xfs") await growFilesystem(device.devicePath, stagingPath, "xfs", growOpts);
  }

  /**
   * The CO's cancel (a client deadline) stops what has not changed anything yet: path checks, the
   * mount table read and the attach (an nvme connect waiting for its device). fsck, mkfs and mount
   * are not cancelled: a half-made filesystem or a mount the kernel is completing must finish.
   */
  async function NodeStageVolume(req: Req, ctx?: RpcSignal) {
    const signal = ctx?.signal;
    const volumeId = requireString(req, "volume_id");
    const stagingPath = deps.paths.lexical("staging_target_path", requireString(req, "staging_target_path"));
    const cap = parseCapability(req);
    const target = parseVolumeContext(volumeId, req.volume_context, { fileDir: deps.fileDir });
    const log = deps.log.child({
      op: "NodeStageVolume",
      volume_id: volumeId,
      ...(target.nqn ? { nqn: target.nqn } : {}),
    });
    return exclusive(volumeId, "NodeStageVolume", async () => {
      await deps.paths.confine({ staging_target_path: stagingPath }, signal);
      const existing = await deps.records.read(volumeId);
      if (existing) {
        const conflict = stagingConflict(existing, target, cap, stagingPath);
        if (conflict) throw alreadyExists(`volume ${volumeId} is ${conflict}`);
      }
      const others = await otherRecords(volumeId);
      refuseClaimed(others, stagingPath, "staging_target_path");
      // One loop device per backing file, ever: a second volume naming the same file is refused.
      const sharing = target.backingFile ? others.find((r) => r.backing_file === target.backingFile) : undefined;
      if (sharing)
        throw failedPrecondition(
          `backing file ${target.backingFile} belongs to volume ${sharing.volume_id} on this node`,
        );
      const releaseFile = target.backingFile ? deps.locks.tryAcquire(`file:${target.backingFile}`) : () => {};
      if (!releaseFile) throw aborted(`another operation is attaching ${target.backingFile}; retry later`);
      try {
        return await stageLocked(volumeId, stagingPath, cap, target, existing, others.length, log, signal);
      } finally {
        releaseFile();
      }
    });
  }

  async function stageLocked(
    volumeId: string,
    stagingPath: string,
    cap: Capability,
    target: VolumeTarget,
    existing: StagingRecord | null,
    otherVolumes: number,
    log: Logger,
    signal?: AbortSignal,
  ) {
    const mounts = await preflight(signal);
    // The records were just listed (otherRecords): without one of its own, this volume would be one more.
    if (!existing && deps.maxVolumes > 0 && otherVolumes >= deps.maxVolumes) {
      throw new DomainError(
        "resource-exhausted",
        `this node already has ${deps.maxVolumes} volumes staged (max-volumes)`,
      );
    }
    const record: StagingRecord = existing ?? {
      volume_id: volumeId,
      transport: target.transport,
      nqn: target.nqn,
      nvme_address: target.address,
      nvme_port: target.port,
      ctrl_loss_tmo: target.ctrlLossTmo,
      reconnect_delay: target.reconnectDelay,
      keep_alive_tmo: target.keepAliveTmo,
      backing_file: target.backingFile,
      staging_path: stagingPath,
      fs_type: cap.accessType === "mount" ? cap.fsType : "",
      access_type: cap.accessType,
      access_mode: cap.accessMode,
      mount_flags: cap.mountFlags,
      staged_at: new Date().toISOString(),
      state: "staging",
      created_staging_dir: false,
      publications: [],
    };
    if (!existing && target.transport === "loop") {
      // Our own attach always has a record (written first); a loop device without one is someone else's.
      const foreign = await deps.connectors.loop.find(target);
      if (foreign)
        throw failedPrecondition(
          `backing file ${target.backingFile} is already attached as ${foreign.devicePath} by something other than volume ${volumeId}'s staging; not attaching it twice`,
        );
    }
    // Recorded before the first change, so unstage can undo a stage that crashed halfway.
    if (!existing) await deps.records.write(record);
    const device = await deps.connectors[target.transport].attach(target, signal).catch((e) => {
      log.error(
        { err: (e as Error).message, gc_would: "detach the volume if it stays unstaged" },
        "attach failed; leaving whatever was set up in place",
      );
      throw e;
    });
    crashPoint("node.stage.attached");
    if (cap.accessType === "mount") {
      const staged = mountsAt(mounts, stagingPath);
      if (staged.length > 0) {
        if (!staged.some((m) => m.dev === device.dev)) {
          throw alreadyExists(
            `staging_target_path ${stagingPath} has another filesystem mounted (${staged.at(-1)!.source}, ${staged.at(-1)!.dev})`,
          );
        }
      } else {
        await withVolumeBreaker(volumeId, () => stageFilesystem(record, device, cap, mounts, log)).catch((e) => {
          log.error(
            { err: (e as Error).message, gc_would: `nothing while ${volumeId} is staged; after NodeUnstage: detach` },
            "stage failed; leaving the attachment in place",
          );
          throw e;
        });
      }
    }
    if (record.state !== "staged") {
      record.state = "staged";
      await deps.records.write(record);
      log.info({ device: device.devicePath, dev: device.dev, access_type: cap.accessType }, "volume staged");
    }
    return {};
  }

  /**
   * A mount the kernel refused for the options the CO asked for is INVALID_ARGUMENT: retrying cannot
   * help, and it is no sign of a sick volume (the breaker does not count it). Anything else stays as it was.
   */
  function requestFault(e: unknown, flags: readonly string[]): unknown {
    if (!refusedMountOptions(e, flags)) return e;
    return invalidArgument(
      "volume_capability.mount.mount_flags",
      `the kernel refused the mount options ${flags.join(",")}: ${(e as Error).message}`,
    );
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
   * A volume staged by the Go driver we replace has no record. Its NQN follows from the volume id;
   * unmount what of its device is mounted at the staging path, then disconnect it when nothing
   * else mounts it. A volume we cannot place stays as it is, and so does anything mounted there.
   */
  async function unstageWithoutRecord(volumeId: string, stagingPath: string, log: Logger) {
    const legacy = await legacyDevice(volumeId);
    let mounts = await preflight();
    refuseForeignMounts(mounts, stagingPath, volumeId, legacy?.device, "staging_target_path");
    if (!legacy) return;
    mounts = await unmountAll(stagingPath, log, mounts);
    const users = mounts.filter((m) => m.dev === legacy.device.dev);
    if (users.length > 0) {
      throw failedPrecondition(
        `volume ${volumeId} is still mounted at ${users
          .slice(0, 3)
          .map((m) => m.mountPoint)
          .join(", ")}; unpublish it first`,
      );
    }
    log.info(
      { nqn: legacy.volume.nqn },
      "no staging record (staged by an earlier driver): disconnecting by the NQN its id implies",
    );
    await deps.connectors["nvme-tcp"].detach(legacy.volume);
  }

  async function NodeUnstageVolume(req: Req, ctx?: RpcSignal) {
    const volumeId = requireString(req, "volume_id");
    const stagingPath = deps.paths.lexical("staging_target_path", requireString(req, "staging_target_path"));
    const log = deps.log.child({ op: "NodeUnstageVolume", volume_id: volumeId });
    return exclusive(volumeId, "NodeUnstageVolume", async () => {
      await deps.paths.confine({ staging_target_path: stagingPath }, ctx?.signal);
      const record = await deps.records.read(volumeId);
      if (record && record.staging_path !== stagingPath) {
        throw failedPrecondition(
          `volume ${volumeId} is staged at ${record.staging_path}, not ${stagingPath}; not touching ${stagingPath}`,
        );
      }
      refuseClaimed(await otherRecords(volumeId), stagingPath, "staging_target_path");
      if (!record) {
        await unstageWithoutRecord(volumeId, stagingPath, log);
        return {};
      }
      const mounts = await unmountAll(stagingPath, log);
      crashPoint("node.unstage.unmounted");
      const volume = targetOf(record);
      const device = await deps.connectors[record.transport].find(volume);
      if (device) {
        const users = mounts.filter((m) => m.dev === device.dev);
        if (users.length > 0) {
          throw failedPrecondition(
            `volume ${volumeId} is still mounted at ${users
              .slice(0, 3)
              .map((m) => m.mountPoint)
              .join(", ")}${users.length > 3 ? " …" : ""}; unpublish it first`,
          );
        }
      }
      if (record.created_staging_dir) await removeOwned(stagingPath, { directory: true }, log);
      await deps.connectors[record.transport].detach(volume);
      crashPoint("node.unstage.detached");
      await deps.records.remove(volumeId);
      log.info("volume unstaged");
      return {};
    });
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

  async function NodePublishVolume(req: Req, ctx?: RpcSignal) {
    const volumeId = requireString(req, "volume_id");
    const stagingPath = deps.paths.lexical("staging_target_path", requireString(req, "staging_target_path"));
    const targetPath = deps.paths.lexical("target_path", requireString(req, "target_path"));
    const cap = parseCapability(req);
    const readonly = req.readonly === true;
    if (targetPath === stagingPath) throw invalidArgument("target_path", "must differ from staging_target_path");
    const log = deps.log.child({ op: "NodePublishVolume", volume_id: volumeId });
    return exclusive(volumeId, "NodePublishVolume", async () => {
      await deps.paths.confine({ staging_target_path: stagingPath, target_path: targetPath }, ctx?.signal);
      const record = await deps.records.read(volumeId);
      if (!record || record.state !== "staged")
        throw failedPrecondition(`volume ${volumeId} is not staged on this node`);
      if (record.staging_path !== stagingPath)
        throw failedPrecondition(`volume ${volumeId} is staged at ${record.staging_path}, not ${stagingPath}`);
      if (record.access_type !== cap.accessType)
        throw invalidArgument(
          "volume_capability.access_type",
          `volume ${volumeId} was staged as ${record.access_type}`,
        );
      refuseClaimed(await otherRecords(volumeId), targetPath, "target_path");
      const previous = record.publications.find((p) => p.target_path === targetPath);
      if (previous && (previous.readonly !== readonly || previous.access_mode !== cap.accessMode)) {
        throw alreadyExists(
          `volume ${volumeId} is already published at ${targetPath} with readonly=${previous.readonly} mode=${previous.access_mode}`,
        );
      }
      if (SINGLE_WRITER_MODES.has(cap.accessMode)) {
        const other = record.publications.find((p) => p.target_path !== targetPath);
        if (other)
          throw failedPrecondition(
            `volume ${volumeId} is ${cap.accessMode} and already published at ${other.target_path}`,
          );
      }
      const mounts = await preflight();
      const device = await deps.connectors[record.transport].find(targetOf(record));
      if (!device)
        throw failedPrecondition(`volume ${volumeId} is staged but its device is gone; NodeStageVolume must run again`);
      if (cap.accessType === "mount")
        await publishMount(record, device, targetPath, readonly, cap, mounts, !previous, log);
      else await publishBlock(device, targetPath, readonly, !!previous, log);
      if (!previous) {
        record.publications.push({ target_path: targetPath, readonly, access_mode: cap.accessMode });
        await deps.records.write(record);
      }
      return {};
    });
  }

  async function publishMount(
    record: StagingRecord,
    device: AttachedDevice,
    targetPath: string,
    readonly: boolean,
    cap: Capability,
    mounts: MountEntry[],
    unrecorded: boolean,
    log: Logger,
  ) {
    const staged = mountsAt(mounts, record.staging_path).find((m) => m.dev === device.dev);
    if (!staged)
      throw failedPrecondition(
        `staging path ${record.staging_path} of volume ${record.volume_id} is not mounted; NodeStageVolume must run again`,
      );
    const here = mountsAt(mounts, targetPath);
    if (here.length > 0) {
      const top = here.at(-1)!;
      if (top.dev !== device.dev)
        throw alreadyExists(`target_path ${targetPath} has another filesystem mounted (${top.source})`);
      const isRo = top.options.split(",").includes("ro");
      if (isRo === readonly) return;
      // Our own bind mount from a publish that died before its read-only remount: finish it.
      if (unrecorded && readonly) {
        await remountBind(targetPath, ["ro", ...cap.mountFlags.filter((f) => f !== "rw")], ops(t.mountMs, log));
        return;
      }
      throw alreadyExists(`target_path ${targetPath} is already mounted ${isRo ? "read-only" : "read-write"}`);
    }
    assertNoStorm(mounts, { dev: device.dev, target: targetPath, source: record.staging_path }, deps.stormThreshold);
    // Not a mount point, so stat cannot hang on it; a symlink here would carry the mount elsewhere.
    const k = await pathKind(targetPath, ops(t.commandMs, log));
    if (k.kind === "missing") await makeDirectory(targetPath, ops(t.commandMs, log));
    else if (k.kind !== "directory")
      throw alreadyExists(
        `target_path ${targetPath} exists and is not a directory (${k.kind === "other" ? k.type : k.kind})`,
      );
    const flags = cap.mountFlags.filter((f) => f !== "rw");
    await bindMount(record.staging_path, targetPath, readonly, flags, ops(t.mountMs, log)).catch((e) => {
      throw requestFault(e, flags);
    });
    crashPoint("node.publish.mounted");
  }

  async function publishBlock(
    device: AttachedDevice,
    targetPath: string,
    readonly: boolean,
    ours: boolean,
    log: Logger,
  ) {
    const o = ops(t.commandMs, log);
    const k = await pathKind(targetPath, o);
    if (k.kind === "block") {
      if (k.dev === device.dev) return;
      // A node we made earlier for this volume, now stale after a reconnect renumbered the device.
      if (!ours) throw alreadyExists(`target_path ${targetPath} is a device node for another device (${k.dev})`);
      log.warn({ target: targetPath, old_dev: k.dev, dev: device.dev }, "replacing a stale device node");
      await removePath(targetPath, o);
    } else if (k.kind === "file" && k.size === 0) {
      // The CO may create an empty file as the block target (CSI allows either); it holds nothing.
      await removePath(targetPath, o);
    } else if (k.kind !== "missing") {
      throw alreadyExists(
        `target_path ${targetPath} exists and is not a device node (${k.kind === "other" ? k.type : k.kind})`,
      );
    }
    await makeBlockNode(targetPath, device.dev, readonly, o);
  }

  async function NodeUnpublishVolume(req: Req, ctx?: RpcSignal) {
    const volumeId = requireString(req, "volume_id");
    const targetPath = deps.paths.lexical("target_path", requireString(req, "target_path"));
    const log = deps.log.child({ op: "NodeUnpublishVolume", volume_id: volumeId });
    return exclusive(volumeId, "NodeUnpublishVolume", async () => {
      await deps.paths.confine({ target_path: targetPath }, ctx?.signal);
      const record = await deps.records.read(volumeId);
      refuseClaimed(await otherRecords(volumeId), targetPath, "target_path");
      const owned = record?.publications.find((p) => p.target_path === targetPath);
      const device = record
        ? await deps.connectors[record.transport].find(targetOf(record))
        : (await legacyDevice(volumeId))?.device;
      const mounts = await preflight();
      // A publication the record lists is ours whatever is mounted (the device may be gone); else only the volume's own device.
      if (!owned) refuseForeignMounts(mounts, targetPath, volumeId, device, "target_path");
      if (mountsAt(mounts, targetPath).length > 0) await unmountAll(targetPath, log, mounts);
      crashPoint("node.unpublish.unmounted");
      const blockDev = record?.access_type === "block" || (!record && device) ? device?.dev : undefined;
      await removeOwned(targetPath, { directory: true, ...(blockDev ? { blockDev } : {}) }, log);
      if (record && owned) {
        record.publications = record.publications.filter((p) => p.target_path !== targetPath);
        await deps.records.write(record);
      }
      return {};
    });
  }

  /**
   * The record of a volume whose path the CO names. Order (CSI spec tables, as csi-sanity checks
   * them): a missing field is INVALID_ARGUMENT; then an unknown volume is NOT_FOUND whatever its
   * path looks like; only then is the path's form checked, then that it is the volume's.
   */
  async function knownPath(
    volumeId: string,
    req: Req,
    field: string,
  ): Promise<{ record: StagingRecord; path: string }> {
    const raw = requireString(req, field);
    const record = await deps.records.read(volumeId);
    if (!record) throw notFound(`volume ${volumeId} is not staged on this node`);
    const path = deps.paths.lexical(field, raw);
    if (record.staging_path !== path && !record.publications.some((p) => p.target_path === path)) {
      throw notFound(`${path} is neither the staging path nor a published path of volume ${volumeId}`);
    }
    return { record, path };
  }

  async function NodeExpandVolume(req: Req) {
    const volumeId = requireString(req, "volume_id");
    const required = Number(req.capacity_range?.required_bytes ?? 0);
    const limit = Number(req.capacity_range?.limit_bytes ?? 0);
    if (!Number.isFinite(required) || required < 0)
      throw invalidArgument("capacity_range.required_bytes", "must be a non-negative number");
    const log = deps.log.child({ op: "NodeExpandVolume", volume_id: volumeId });
    const { record } = await knownPath(volumeId, req, "volume_path");
    return exclusive(volumeId, "NodeExpandVolume", async () => {
      const connector = deps.connectors[record.transport];
      await connector.refreshSize?.(targetOf(record), undefined, required > 0 ? required : undefined);
      const device = await connector.find(targetOf(record));
      if (!device) throw notFound(`volume ${volumeId} has no device on this node`);
      const size = device.sizeBytes ?? 0;
      if (required > 0 && size < required) {
        throw outOfRange(
          `device of volume ${volumeId} is ${size} bytes, less than the required ${required}; expand it on the controller first`,
        );
      }
      if (limit > 0 && size > limit)
        log.warn({ size, limit }, "device is larger than the limit; growing to the device size");
      if (record.access_type === "mount") {
        await growFilesystem(device.devicePath, record.staging_path, record.fs_type as FsType, {
          runner: deps.runner,
          log,
          timeoutMs: t.growMs,
        });
      }
      return { capacity_bytes: size };
    });
  }

  async function NodeGetVolumeStats(req: Req) {
    const volumeId = requireString(req, "volume_id");
    const { record, path: volumePath } = await knownPath(volumeId, req, "volume_path");
    const connector = deps.connectors[record.transport];
    const transport =
      connector
        .transportProblem?.(targetOf(record))
        .catch((e) => `transport state unreadable: ${(e as Error).message}`) ?? null;
    if (record.access_type === "block") {
      const device = await connector.find(targetOf(record));
      if (!device)
        return { usage: [], volume_condition: { abnormal: true, message: "the volume's device is not attached" } };
      return withTransportProblem(
        {
          usage: [{ unit: "BYTES", total: device.sizeBytes ?? 0, available: 0, used: 0 }],
          volume_condition: { abnormal: false, message: "device attached" },
        },
        await transport,
      );
    }
    const [stats, problem] = await Promise.all([filesystemStats(deps.probes, volumePath, t.probeMs), transport]);
    return withTransportProblem(stats, problem);
  }

  return {
    NodeStageVolume,
    NodeUnstageVolume,
    NodePublishVolume,
    NodeUnpublishVolume,
    NodeExpandVolume,
    NodeGetVolumeStats,
    async NodeGetCapabilities() {
      return { capabilities: NODE_CAPABILITIES.map((type) => ({ rpc: { type } })) };
    },
    async NodeGetInfo() {
      return {
        node_id: deps.hostNqn ? `${deps.nodeName}/${deps.hostNqn}` : deps.nodeName,
        max_volumes_per_node: deps.maxVolumes,
        accessible_topology: { segments: { [TOPOLOGY_KEY]: deps.nodeName } },
      };
    },
  };
}

export type NodeService = ReturnType<typeof createNodeService>;
