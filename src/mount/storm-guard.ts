import type { MountEntry } from "./mountinfo.ts";

/**
 * Mount storm defence (incident 2: 2,048 mounts, OOM). Before any mount, a source device or a
 * target with `threshold` entries already is refused, and the operator is told what to run.
 */
export const DEFAULT_STORM_THRESHOLD = 100;
/** A table this large means mounting has already run away somewhere: stop adding to it. */
export const DEFAULT_STORM_TOTAL = 20_000;

const ADVICE =
  "run `rds-csi doctor` to see the duplicates and `rds-csi gc` (then `rds-csi gc --force`) to clean them up";

/**
 * A mount refused because of a storm: at one device, at one target, or across the whole table.
 * Which CSI code that is (the volume's own excess, or the node's) is the service's call.
 */
export class StormRefusedError extends Error {
  override readonly name = "StormRefusedError";
  constructor(
    readonly scope: "device" | "target" | "table",
    readonly count: number,
    readonly limit: number,
    message: string,
  ) {
    super(message);
  }
}

export function countMounts(
  mounts: readonly MountEntry[],
  what: { dev?: string; mountPoint?: string },
): { byDev: number; byTarget: number } {
  let byDev = 0,
    byTarget = 0;
  for (const m of mounts) {
    if (what.dev !== undefined && m.dev === what.dev) byDev++;
    if (what.mountPoint !== undefined && m.mountPoint === what.mountPoint) byTarget++;
  }
  return { byDev, byTarget };
}

/** Throws StormRefusedError when the next mount of `dev` at `target` would add to a storm. */
export function assertNoStorm(
  mounts: readonly MountEntry[],
  what: { dev: string; target: string; source: string },
  threshold: number,
): void {
  const { byDev, byTarget } = countMounts(mounts, { dev: what.dev, mountPoint: what.target });
  if (byDev >= threshold) {
    throw new StormRefusedError(
      "device",
      byDev,
      threshold,
      `refusing to mount: device ${what.source} (${what.dev}) already has ${byDev} mount entries (limit ${threshold}); ${ADVICE}`,
    );
  }
  if (byTarget >= threshold) {
    throw new StormRefusedError(
      "target",
      byTarget,
      threshold,
      `refusing to mount: ${what.target} already has ${byTarget} mount entries stacked (limit ${threshold}); ${ADVICE}`,
    );
  }
}

/** Pre-flight: the node is already in a storm, so any mount we add makes it worse. */
export function assertTableSane(mounts: readonly MountEntry[], totalLimit: number): void {
  if (mounts.length >= totalLimit) {
    throw new StormRefusedError(
      "table",
      mounts.length,
      totalLimit,
      `the mount table has ${mounts.length} entries (limit ${totalLimit}); a mount storm is under way; ${ADVICE}`,
    );
  }
}
