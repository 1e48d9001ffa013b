import type { Backend, Disk, StrayFile } from "./backend.ts";

export interface OrphanQuery {
  /**
   * Volume ids some PersistentVolume references (from the Kubernetes API, or a list the operator
   * gives). undefined = unknown: then nothing is a candidate, because "could not tell" is not "unused".
   */
  referencedVolumeIds: ReadonlySet<string> | undefined;
  /** Only slots with this prefix are ever considered (ours: "pvc-"). */
  slotPrefix: string;
  graceMs: number;
  now: number;
}

export interface OrphanCandidate {
  volumeId: string;
  filePath: string;
  sizeBytes: number;
  createdAt: number;
  ageMs: number;
}

export interface OrphanReport {
  candidates: OrphanCandidate[];
  /** Backing files of no disk (a delete died half-way), unreferenced and older than the grace. */
  strayFiles: StrayFile[];
  /** Disks with the prefix that were looked at and kept, with why (for the gc plan's output). */
  kept: { volumeId: string; reason: string }[];
}

function keepReason(d: Disk, q: OrphanQuery): string | null {
  if (!d.id.startsWith(q.slotPrefix)) return "outside the managed slot prefix";
  if (q.referencedVolumeIds!.has(d.id)) return "referenced by a PersistentVolume";
  if (d.copying) return "a copy is still filling it";
  if ((d.meta.publishedTo?.length ?? 0) > 0) return `published to ${d.meta.publishedTo!.join(", ")}`;
  // An export restricted to a host means some node was given it: never collect what a host may be using.
  if (d.exported && d.allowedHosts.length > 0) return `exported to host ${d.allowedHosts.join(", ")}`;
  if (d.createdAt === undefined) return "creation time unknown";
  if (q.now - d.createdAt < q.graceMs) return "younger than the grace period";
  return null;
}

/** Disks with the managed slot prefix that nothing references and that are older than the grace. */
export async function findOrphans(backend: Backend, q: OrphanQuery, signal?: AbortSignal): Promise<OrphanReport> {
  if (q.slotPrefix.length < 2) throw new Error(`slot prefix ${JSON.stringify(q.slotPrefix)} is too broad`);
  const disks = (await backend.listDisks(signal)).filter((d) => d.id.startsWith(q.slotPrefix));
  if (q.referencedVolumeIds === undefined) {
    return {
      candidates: [],
      strayFiles: [],
      kept: disks.map((d) => ({
        volumeId: d.id,
        reason: "PersistentVolume references unknown (no Kubernetes credentials and no list given)",
      })),
    };
  }
  const strays = (await backend.strayFiles(signal)).filter(
    (f) =>
      f.volumeId.startsWith(q.slotPrefix) &&
      !q.referencedVolumeIds!.has(f.volumeId) &&
      f.createdAt !== undefined &&
      q.now - f.createdAt >= q.graceMs,
  );
  const report: OrphanReport = { candidates: [], strayFiles: strays, kept: [] };
  for (const d of disks) {
    const why = keepReason(d, q);
    if (why) report.kept.push({ volumeId: d.id, reason: why });
    else
      report.candidates.push({
        volumeId: d.id,
        filePath: d.filePath,
        sizeBytes: d.sizeBytes,
        createdAt: d.createdAt!,
        ageMs: q.now - d.createdAt!,
      });
  }
  return report;
}
