import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { StagingRecord as NodeStagingRecord } from "../node/staging-records.ts";
import { withDeadline } from "../runtime/deadline.ts";

/**
 * Read-only view of the node's staging records (`<state-dir>/volumes/<volume_id>.json`, written
 * by csi-node at stage time). gc only ever reads them, and deletes one when it is stale.
 */
/** The fields gc relies on (the node may write more), plus where the record was read from. */
export type StagingRecord = Pick<NodeStagingRecord, "volume_id" | "transport" | "nqn" | "backing_file" | "staging_path" | "access_type" | "staged_at">
  & Partial<Pick<NodeStagingRecord, "fs_type" | "state">>
  & { path: string };

export const recordsDir = (stateDir: string) => join(stateDir, "volumes");

/** Why a parsed JSON value is not a staging record, or null. */
function recordProblem(x: unknown, fileId: string): string | null {
  if (typeof x !== "object" || x === null || Array.isArray(x)) return "not a JSON object";
  const r = x as Record<string, unknown>;
  if (typeof r.volume_id !== "string" || r.volume_id === "") return "no volume_id";
  if (r.volume_id !== fileId) return `volume_id ${JSON.stringify(r.volume_id)} does not match the file name`;
  if (typeof r.staging_path !== "string" || !r.staging_path.startsWith("/")) return "no absolute staging_path";
  if (r.transport !== "nvme-tcp" && r.transport !== "loop") return `unknown transport ${JSON.stringify(r.transport)}`;
  if (r.transport === "nvme-tcp" && typeof r.nqn !== "string") return "transport nvme-tcp without nqn";
  if (r.transport === "loop" && typeof r.backing_file !== "string") return "transport loop without backing_file";
  if (r.access_type !== "mount" && r.access_type !== "block") return `unknown access_type ${JSON.stringify(r.access_type)}`;
  if (typeof r.staged_at !== "string") return "no staged_at";
  return null;
}

export interface RecordScan {
  records: StagingRecord[];
  unreadable: { path: string; reason: string }[];
}

/** Reads every record; anything that is not a well-formed record is reported, never guessed at. */
export function readStagingRecords(stateDir: string, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<RecordScan> {
  const dir = recordsDir(stateDir);
  return withDeadline(`reading staging records in ${dir}`, opts.timeoutMs, async () => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return { records: [], unreadable: [] };
      throw e;
    }
    const out: RecordScan = { records: [], unreadable: [] };
    for (const name of names.filter((n) => n.endsWith(".json")).sort()) {
      const path = join(dir, name);
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(path, "utf8"));
      } catch (e) {
        out.unreadable.push({ path, reason: `cannot read: ${(e as Error).message}` });
        continue;
      }
      const problem = recordProblem(parsed, name.slice(0, -".json".length));
      if (problem) out.unreadable.push({ path, reason: problem });
      else out.records.push({ ...(parsed as Omit<StagingRecord, "path">), path });
    }
    return out;
  }, opts.signal);
}

/** Reads one record again (execute re-checks right before deleting it); null when it is gone or changed shape. */
export async function rereadRecord(path: string, timeoutMs: number): Promise<StagingRecord | null> {
  return withDeadline(`reading ${path}`, timeoutMs, async () => {
    try {
      const parsed = JSON.parse(await readFile(path, "utf8"));
      const fileId = path.slice(path.lastIndexOf("/") + 1).replace(/\.json$/, "");
      return recordProblem(parsed, fileId) ? null : { ...parsed, path };
    } catch {
      return null;
    }
  });
}
