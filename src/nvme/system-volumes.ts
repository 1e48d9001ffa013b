import { withDeadline } from "../runtime/deadline.ts";
import { stackedDevs } from "../sysfs/block-stack.ts";
import type { MountEntry } from "../mount/mountinfo.ts";
import { listSubsystems, type NvmeSubsystem } from "./sysfs.ts";

/**
 * Which NVMe subsystems back a mount outside the kubelet tree (/, /nix, /var, /home …).
 * A diskless node boots from NVMe/TCP volumes on the same RDS; whatever its NQN looks like,
 * such a subsystem is the node's own and must never be disconnected (incident 1). The result
 * feeds classifyNqn's `systemNqns`, recomputed at the moment of asking.
 */

export interface SystemVolumeOptions {
  /** Mounts at or below these trees are workload volumes, not the system's (kubelet dir by default). */
  workloadTrees: readonly string[];
  timeoutMs?: number;
  signal?: AbortSignal;
}

const isUnder = (path: string, tree: string) => {
  const t = tree.endsWith("/") ? tree : tree + "/";
  // The tree's own mount point is the system's (a node may mount /var/lib/kubelet from its own volume).
  return path.startsWith(t) && path.length > t.length;
};

export const isWorkloadMount = (mountPoint: string, trees: readonly string[]) =>
  trees.some((t) => isUnder(mountPoint, t));

/** NQNs of subsystems with a namespace (or anything stacked on it) mounted outside the workload trees. */
export async function systemVolumeNqns(
  sysfsRoot: string,
  mounts: readonly MountEntry[],
  opts: SystemVolumeOptions,
  subsystems?: readonly NvmeSubsystem[],
): Promise<Set<string>> {
  const systemDevs = new Set(
    mounts.filter((m) => !isWorkloadMount(m.mountPoint, opts.workloadTrees)).map((m) => m.dev),
  );
  const subs = subsystems ?? (await listSubsystems(sysfsRoot, { timeoutMs: opts.timeoutMs, signal: opts.signal }));
  return withDeadline(
    "scan of block device holders",
    opts.timeoutMs ?? 5_000,
    async () => {
      const result = new Set<string>();
      for (const s of subs) {
        for (const ns of s.namespaces) {
          const devs = await stackedDevs(sysfsRoot, ns.name);
          devs.add(ns.dev);
          if ([...devs].some((d) => systemDevs.has(d))) result.add(s.nqn);
        }
      }
      return result;
    },
    opts.signal,
  );
}
