import type { ProbeRegistry } from "../mount/probe.ts";
import { notFound } from "../runtime/errors.ts";

export interface VolumeCondition {
  abnormal: boolean;
  message: string;
}
export interface VolumeUsage {
  unit: "BYTES" | "INODES";
  available: number;
  total: number;
  used: number;
}

/**
 * Usage and condition of a mounted volume path, from a probe in a child process: a dead mount
 * answers "abnormal" within the deadline instead of hanging the RPC, and a stuck probe is
 * never stacked with a second one (the registry answers "dead" from the first).
 */
export async function filesystemStats(
  probes: ProbeRegistry,
  path: string,
  timeoutMs: number,
): Promise<{ usage: VolumeUsage[]; volume_condition: VolumeCondition }> {
  const r = await probes.probe(path, { timeoutMs });
  if (r.state === "dead") {
    return {
      usage: [],
      volume_condition: {
        abnormal: true,
        message: `${path} did not answer statfs: ${r.reason} (since ${new Date(r.sinceMs).toISOString()})`,
      },
    };
  }
  if (r.state === "error") {
    if (r.missing) throw notFound(`volume path ${path} does not exist`);
    return { usage: [], volume_condition: { abnormal: true, message: `statfs of ${path} failed: ${r.reason}` } };
  }
  const s = r.stats;
  if (!s) return { usage: [], volume_condition: { abnormal: false, message: "mounted; no usage figures available" } };
  return {
    usage: [
      { unit: "BYTES", available: s.bytesAvailable, total: s.bytesTotal, used: s.bytesUsed },
      { unit: "INODES", available: s.inodesFree, total: s.inodesTotal, used: s.inodesUsed },
    ],
    volume_condition: { abnormal: false, message: "healthy" },
  };
}

/**
 * A mounted filesystem can answer statfs from memory while the transport under it is gone (an NVMe
 * controller reconnecting): the transport's problem makes the volume abnormal whatever statfs said.
 */
export function withTransportProblem<T extends { volume_condition: VolumeCondition }>(
  stats: T,
  problem: string | null,
): T {
  if (!problem) return stats;
  const also = stats.volume_condition.abnormal ? `; ${stats.volume_condition.message}` : "";
  return { ...stats, volume_condition: { abnormal: true, message: `${problem}${also}` } };
}
