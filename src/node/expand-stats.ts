import { nodeRpc } from "./outcomes.ts";
import { notFound, outOfRange } from "../runtime/errors.ts";
import { growFilesystem, type FsType } from "../fs/mkfs.ts";
import { targetOf, type NodeContext } from "./context.ts";
import type { StagingRecord } from "./staging-records.ts";
import { filesystemStats, withTransportProblem } from "./volume-stats.ts";

/** NodeExpandVolume and NodeGetVolumeStats: both name a volume and one of its paths. */
export function expandStatsHandlers(c: NodeContext) {
  const { deps, t } = c;

  /**
   * The record of a volume whose path the CO names. Order (CSI spec tables, as csi-sanity checks
   * them): a missing field is INVALID_ARGUMENT (the request schema); then an unknown volume is
   * NOT_FOUND whatever its path looks like; only then is the path's form checked, then that it is the volume's.
   */
  async function knownPath(volumeId: string, raw: string): Promise<{ record: StagingRecord; path: string }> {
    const record = await deps.records.read(volumeId);
    if (!record) throw notFound(`volume ${volumeId} is not staged on this node`);
    const path = deps.paths.lexical("volume_path", raw);
    if (record.staging_path !== path && !record.publications.some((p) => p.target_path === path)) {
      throw notFound(`${path} is neither the staging path nor a published path of volume ${volumeId}`);
    }
    return { record, path };
  }

  const NodeExpandVolume = nodeRpc(
    c.schemas.NodeExpandVolume,
    async ({ volumeId, requiredBytes: required, limitBytes: limit, volumePath }, ctx) => {
      const log = ctx.log;
      const { record } = await knownPath(volumeId, volumePath);
      return c.exclusive(volumeId, "NodeExpandVolume", async () => {
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
    },
  );

  const NodeGetVolumeStats = nodeRpc(c.schemas.NodeGetVolumeStats, async ({ volumeId, volumePath: raw }) => {
    const { record, path: volumePath } = await knownPath(volumeId, raw);
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
  });

  return { NodeExpandVolume, NodeGetVolumeStats };
}
