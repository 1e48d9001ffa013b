import { nodeRpc } from "./outcomes.ts";
import {
  aborted,
  alreadyExists,
  DomainError,
  failedPrecondition,
  invalidArgument,
  unavailable,
} from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import { crashPoint } from "../runtime/crash-points.ts";
import { checkFilesystem } from "../fs/health-check.ts";
import { ext4SmallerThanDevice, growFilesystem, makeFilesystem, type FsType } from "../fs/mkfs.ts";
import { probeFilesystem } from "../fs/probe-filesystem.ts";
import type { MountEntry } from "../mount/mountinfo.ts";
import { makeDirectoryNoFollow, mountDevice, refusedMountOptions } from "../mount/ops.ts";
import { assertNoStorm } from "../mount/storm-guard.ts";
import type { AttachedDevice, VolumeTarget } from "./connector.ts";
import { mountsAt, targetOf, type NodeContext } from "./context.ts";
import type { Capability } from "./requests.ts";
import type { StagingRecord } from "./staging-records.ts";

/** ext4's driver mounts its ancestors too; asking for ext4 on an ext3 volume is fine. */
const COMPATIBLE_FS: Record<FsType, string[]> = { ext4: ["ext4", "ext3", "ext2"], xfs: ["xfs"] };

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
 * A mount the kernel refused for the options the CO asked for is INVALID_ARGUMENT: retrying cannot
 * help, and it is no sign of a sick volume (the breaker does not count it). Anything else stays as it was.
 */
export function requestFault(e: unknown, flags: readonly string[]): unknown {
  if (!refusedMountOptions(e, flags)) return e;
  return invalidArgument(
    "volume_capability.mount.mount_flags",
    `the kernel refused the mount options ${flags.join(",")}: ${(e as Error).message}`,
  );
}

/** NodeStageVolume and NodeUnstageVolume. */
export function stageHandlers(c: NodeContext) {
  const { deps, t, ops } = c;

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
    // Anything in the way, a symlink included (mount would follow it out of the kubelet dir), is refused.
    const made = await makeDirectoryNoFollow(stagingPath, ops(t.commandMs, log));
    if (made === "in-the-way")
      throw failedPrecondition(`staging_target_path ${stagingPath} exists and is not a directory`);
    if (made === "created") {
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
  const NodeStageVolume = nodeRpc(c.schemas.NodeStageVolume, async ({ volumeId, stagingPath, cap, target }, ctx) => {
    const signal = ctx.signal;
    const log = ctx.log.child({ ...(target.nqn ? { nqn: target.nqn } : {}) });
    return c.exclusive(volumeId, "NodeStageVolume", async () => {
      const {
        mounts,
        record: existing,
        others,
      } = await c.preflight({ staging_target_path: stagingPath }, volumeId, signal);
      if (existing) {
        const conflict = stagingConflict(existing, target, cap, stagingPath);
        if (conflict) throw alreadyExists(`volume ${volumeId} is ${conflict}`);
      }
      c.refuseClaimed(others, stagingPath, "staging_target_path");
      // One loop device per backing file, ever: a second volume naming the same file is refused.
      const sharing = target.backingFile ? others.find((r) => r.backing_file === target.backingFile) : undefined;
      if (sharing)
        throw failedPrecondition(
          `backing file ${target.backingFile} belongs to volume ${sharing.volume_id} on this node`,
        );
      const releaseFile = target.backingFile ? deps.locks.tryAcquire(`file:${target.backingFile}`) : () => {};
      if (!releaseFile) throw aborted(`another operation is attaching ${target.backingFile}; retry later`);
      try {
        return await stageLocked(volumeId, stagingPath, cap, target, existing, others.length, mounts, log, signal);
      } finally {
        releaseFile();
      }
    });
  });

  async function stageLocked(
    volumeId: string,
    stagingPath: string,
    cap: Capability,
    target: VolumeTarget,
    existing: StagingRecord | null,
    otherVolumes: number,
    mounts: MountEntry[],
    log: Logger,
    signal: AbortSignal,
  ) {
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
   * A volume staged by the Go driver we replace has no record. Its NQN follows from the volume id;
   * unmount what of its device is mounted at the staging path, then disconnect it when nothing
   * else mounts it. A volume we cannot place stays as it is, and so does anything mounted there.
   */
  async function unstageWithoutRecord(volumeId: string, stagingPath: string, known: MountEntry[], log: Logger) {
    const legacy = await c.legacyDevice(volumeId);
    let mounts = known;
    c.refuseForeignMounts(mounts, stagingPath, volumeId, legacy?.device, "staging_target_path");
    if (!legacy) return;
    mounts = await c.unmountAll(stagingPath, log, mounts);
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

  const NodeUnstageVolume = nodeRpc(c.schemas.NodeUnstageVolume, async ({ volumeId, stagingPath }, ctx) => {
    const log = ctx.log;
    return c.exclusive(volumeId, "NodeUnstageVolume", async () => {
      const {
        mounts: known,
        record,
        others,
      } = await c.preflight({ staging_target_path: stagingPath }, volumeId, ctx.signal);
      if (record && record.staging_path !== stagingPath) {
        throw failedPrecondition(
          `volume ${volumeId} is staged at ${record.staging_path}, not ${stagingPath}; not touching ${stagingPath}`,
        );
      }
      c.refuseClaimed(others, stagingPath, "staging_target_path");
      if (!record) {
        await unstageWithoutRecord(volumeId, stagingPath, known, log);
        return {};
      }
      const mounts = await c.unmountAll(stagingPath, log, known);
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
      if (record.created_staging_dir) await c.removeOwned(stagingPath, { directory: true }, log);
      await deps.connectors[record.transport].detach(volume);
      crashPoint("node.unstage.detached");
      await deps.records.remove(volumeId);
      log.info("volume unstaged");
      return {};
    });
  });

  return { NodeStageVolume, NodeUnstageVolume };
}
