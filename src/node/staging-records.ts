import { lstat, mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { withDeadline } from "../runtime/deadline.ts";
import { invalidArgument } from "../runtime/errors.ts";
import { crashPoint } from "../runtime/crash-points.ts";
import type { Transport } from "./connector.ts";

/**
 * What NodeUnstage needs and the CO does not resend, kept in `<state-dir>/volumes/<id>.json`
 * (read by gc too). Written before the first system change so a crash after any step can be
 * converged on retry; always temp + rename so a reader never sees half a record.
 */
export interface StagingRecord {
  volume_id: string;
  transport: Transport;
  nqn?: string;
  nvme_address?: string;
  nvme_port?: number;
  ctrl_loss_tmo?: number;
  reconnect_delay?: number;
  keep_alive_tmo?: number;
  backing_file?: string;
  staging_path: string;
  fs_type: string;
  access_type: "mount" | "block";
  access_mode: string;
  mount_flags: string[];
  staged_at: string;
  /** "staging" until the stage path finished once; gc treats both as in use. */
  state: "staging" | "staged";
  created_staging_dir: boolean;
  /** Set just before mkfs and cleared after it: present only while a format of ours is unfinished. */
  formatting?: { device: string; fs_type: string; started_at: string };
  publications: { target_path: string; readonly: boolean; access_mode: string }[];
}

const IO_TIMEOUT_MS = 5_000;

/** Volume ids become file names: refuse anything that could step outside the directory. */
function fileName(volumeId: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,253}$/.test(volumeId)) throw invalidArgument("volume_id", `cannot be used as a record name: ${JSON.stringify(volumeId)}`);
  return `${volumeId}.json`;
}

export interface StagingRecords {
  dir: string;
  read(volumeId: string): Promise<StagingRecord | null>;
  write(record: StagingRecord): Promise<void>;
  remove(volumeId: string): Promise<void>;
  list(): Promise<StagingRecord[]>;
  /** Removes temp files of writes a crash interrupted; returns their names. */
  removeTempFiles(): Promise<string[]>;
}

export function stagingRecords(stateDir: string): StagingRecords {
  const dir = join(stateDir, "volumes");
  const io = <T>(what: string, fn: () => Promise<T>) => withDeadline(what, IO_TIMEOUT_MS, fn);
  const read = (volumeId: string) => io(`read staging record ${volumeId}`, async () => {
    try {
      return JSON.parse(await readFile(join(dir, fileName(volumeId)), "utf8")) as StagingRecord;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  });
  return {
    dir,
    read,
    write: (record) => io(`write staging record ${record.volume_id}`, async () => {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      // A symlink planted here would carry root's writes anywhere on the host.
      if (!(await lstat(dir)).isDirectory()) throw new Error(`${dir} is not a plain directory; refusing to write staging records through it`);
      const final = join(dir, fileName(record.volume_id));
      const temp = `${final}.${process.pid}.${Date.now()}.tmp`;
      await writeFile(temp, JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
      crashPoint("record.temp-written");
      await rename(temp, final);
      crashPoint(`record.written.${record.state}${record.formatting ? ".formatting" : ""}`);
    }),
    removeTempFiles: () => io("remove temp staging records", async () => {
      let names: string[] = [];
      try { names = (await readdir(dir)).filter((n) => /\.json\.\d+\.\d+\.tmp$/.test(n)); } catch { return []; }
      for (const n of names) await rm(join(dir, n), { force: true });
      return names;
    }),
    remove: (volumeId) => io(`remove staging record ${volumeId}`, () => rm(join(dir, fileName(volumeId)), { force: true })),
    list: () => io("list staging records", async () => {
      let names: string[] = [];
      try { names = (await readdir(dir)).filter((n) => n.endsWith(".json")); } catch { return []; }
      const out: StagingRecord[] = [];
      for (const n of names) {
        const r = await read(n.slice(0, -5)).catch(() => null);
        if (r) out.push(r);
      }
      return out;
    }),
  };
}
