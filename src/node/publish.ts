import { nodeRpc } from "./outcomes.ts";
import { SINGLE_WRITER_MODES } from "../csi/capabilities.ts";
import { alreadyExists, failedPrecondition, invalidArgument } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import { crashPoint } from "../runtime/crash-points.ts";
import type { MountEntry } from "../mount/mountinfo.ts";
import {
  bindMount,
  makeBlockNode,
  makeDirectory,
  makeDirectoryIfMissing,
  pathKind,
  remountBind,
  removePath,
} from "../mount/ops.ts";
import { assertNoStorm } from "../mount/storm-guard.ts";
import type { AttachedDevice } from "./connector.ts";
import { mountsAt, targetOf, type NodeContext } from "./context.ts";
import type { Capability } from "./requests.ts";
import { requestFault } from "./stage.ts";
import type { StagingRecord } from "./staging-records.ts";

/** NodePublishVolume and NodeUnpublishVolume. */
export function publishHandlers(c: NodeContext) {
  const { deps, t, ops } = c;

  const NodePublishVolume = nodeRpc(
    c.schemas.NodePublishVolume,
    async ({ volumeId, stagingPath, targetPath, cap, readonly }, ctx) => {
      const log = ctx.log;
      return c.exclusive(volumeId, "NodePublishVolume", async () => {
        const { mounts, record, others } = await c.preflight(
          { staging_target_path: stagingPath, target_path: targetPath },
          volumeId,
          ctx.signal,
        );
        if (!record || record.state !== "staged")
          throw failedPrecondition(`volume ${volumeId} is not staged on this node`);
        if (record.staging_path !== stagingPath)
          throw failedPrecondition(`volume ${volumeId} is staged at ${record.staging_path}, not ${stagingPath}`);
        if (record.access_type !== cap.accessType)
          throw invalidArgument(
            "volume_capability.access_type",
            `volume ${volumeId} was staged as ${record.access_type}`,
          );
        c.refuseClaimed(others, targetPath, "target_path");
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
        const device = await deps.connectors[record.transport].find(targetOf(record));
        if (!device)
          throw failedPrecondition(
            `volume ${volumeId} is staged but its device is gone; NodeStageVolume must run again`,
          );
        if (cap.accessType === "mount")
          await publishMount(record, device, targetPath, readonly, cap, mounts, !previous, log);
        else await publishBlock(device, targetPath, readonly, !!previous, log);
        if (!previous) {
          record.publications.push({ target_path: targetPath, readonly, access_mode: cap.accessMode });
          await deps.records.write(record);
        }
        return {};
      });
    },
  );

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
    // Not a mount point (the table says so), so mkdir and stat cannot hang on it. A directory mkdir has
    // just made is empty and no symlink; anything that was there already is looked at first, because a
    // symlink here would carry the mount elsewhere. The usual first publish needs one child, not two.
    if ((await makeDirectoryIfMissing(targetPath, ops(t.commandMs, log))) !== "created") {
      const k = await pathKind(targetPath, ops(t.commandMs, log));
      if (k.kind === "missing") await makeDirectory(targetPath, ops(t.commandMs, log));
      else if (k.kind !== "directory")
        throw alreadyExists(
          `target_path ${targetPath} exists and is not a directory (${k.kind === "other" ? k.type : k.kind})`,
        );
    }
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

  const NodeUnpublishVolume = nodeRpc(c.schemas.NodeUnpublishVolume, async ({ volumeId, targetPath }, ctx) => {
    const log = ctx.log;
    return c.exclusive(volumeId, "NodeUnpublishVolume", async () => {
      const { mounts, record, others } = await c.preflight({ target_path: targetPath }, volumeId, ctx.signal);
      c.refuseClaimed(others, targetPath, "target_path");
      const owned = record?.publications.find((p) => p.target_path === targetPath);
      const device = record
        ? await deps.connectors[record.transport].find(targetOf(record))
        : (await c.legacyDevice(volumeId))?.device;
      // A publication the record lists is ours whatever is mounted (the device may be gone); else only the volume's own device.
      if (!owned) c.refuseForeignMounts(mounts, targetPath, volumeId, device, "target_path");
      if (mountsAt(mounts, targetPath).length > 0) await c.unmountAll(targetPath, log, mounts);
      crashPoint("node.unpublish.unmounted");
      const blockDev = record?.access_type === "block" || (!record && device) ? device?.dev : undefined;
      await c.removeOwned(targetPath, { directory: true, ...(blockDev ? { blockDev } : {}) }, log);
      if (record && owned) {
        record.publications = record.publications.filter((p) => p.target_path !== targetPath);
        await deps.records.write(record);
      }
      return {};
    });
  });

  return { NodePublishVolume, NodeUnpublishVolume };
}
