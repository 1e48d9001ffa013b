import { dirname, join } from "node:path";
import type { MountEntry } from "../mount/mountinfo.ts";

/**
 * Which mounts in the kubelet tree belong to this driver. The kubelet tree also holds secrets,
 * empty-dirs and other drivers' volumes; gc may only ever unmount its own.
 */

export const isStrictlyUnder = (path: string, tree: string) => {
  const t = tree.endsWith("/") ? tree : tree + "/";
  return path.startsWith(t) && path.length > t.length;
};

/** Staging dir of this driver in the current kubelet layout: plugins/kubernetes.io/csi/<driver>/<hash>/globalmount. */
export const driverStagingTree = (kubeletDir: string, driverName: string) =>
  join(kubeletDir, "plugins", "kubernetes.io", "csi", driverName);

const PUBLISH = /^\/pods\/[^/]+\/volumes\/kubernetes\.io~csi\/[^/]+\/mount$/;
const OLD_STAGING = /^\/plugins\/kubernetes\.io\/csi\/pv\/[^/]+\/globalmount$/;

/**
 * Mount points whose ownership only vol_data.json (beside the mount point, never inside it) can
 * tell: publish targets, and staging paths of the older kubelet layout.
 */
export function volDataPathFor(mountPoint: string, kubeletDir: string): string | null {
  if (!isStrictlyUnder(mountPoint, kubeletDir)) return null;
  const rel = mountPoint.slice(kubeletDir.replace(/\/$/, "").length);
  return PUBLISH.test(rel) || OLD_STAGING.test(rel) ? join(dirname(mountPoint), "vol_data.json") : null;
}

export interface OwnershipInput {
  kubeletDir: string;
  driverName: string;
  stagingPaths: ReadonlySet<string>;
  volDataMounts: ReadonlySet<string>;
}

/** Why a kubelet-tree mount is ours, or null when it is not (or not provably) ours. */
export function ownMountReason(m: MountEntry, o: OwnershipInput): string | null {
  if (!isStrictlyUnder(m.mountPoint, o.kubeletDir)) return null;
  if (o.stagingPaths.has(m.mountPoint)) return "staging path of a staging record";
  if (isStrictlyUnder(m.mountPoint, driverStagingTree(o.kubeletDir, o.driverName)))
    return `staging path of driver ${o.driverName}`;
  if (o.volDataMounts.has(m.mountPoint)) return `vol_data.json names driver ${o.driverName}`;
  return null;
}

export function ownKubeletMounts(
  mounts: readonly MountEntry[],
  o: OwnershipInput,
): { mount: MountEntry; why: string }[] {
  const out: { mount: MountEntry; why: string }[] = [];
  for (const m of mounts) {
    const why = ownMountReason(m, o);
    if (why) out.push({ mount: m, why });
  }
  return out;
}
