import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseStagingRecord, type StagingRecord as NodeStagingRecord } from "../node/staging-records.ts";
import { withDeadline } from "../runtime/deadline.ts";

/**
 * Read-only view of the node's staging records (`<state-dir>/volumes/<volume_id>.json`, written
 * by csi-node at stage time). gc only ever reads them, and deletes one when it is stale.
 */
/** The fields gc relies on (the node may write more), plus where the record was read from. */
export type StagingRecord = Pick<
  NodeStagingRecord,
  "volume_id" | "transport" | "nqn" | "backing_file" | "staging_path" | "access_type" | "staged_at"
> &
  Partial<Pick<NodeStagingRecord, "fs_type" | "state">> & { path: string };

export const recordsDir = (stateDir: string) => join(stateDir, "volumes");

export interface RecordScan {
  records: StagingRecord[];
  unreadable: { path: string; reason: string }[];
}

/** Reads every record; anything that is not a well-formed record is reported, never guessed at. */
export function readStagingRecords(
  stateDir: string,
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<RecordScan> {
  const dir = recordsDir(stateDir);
  return withDeadline(
    `reading staging records in ${dir}`,
    opts.timeoutMs,
    async () => {
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
        const record = parseStagingRecord(parsed, name.slice(0, -".json".length));
        if (typeof record === "string") out.unreadable.push({ path, reason: record });
        else out.records.push({ ...record, path });
      }
      return out;
    },
    opts.signal,
  );
}
