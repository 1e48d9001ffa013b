import { lstat, mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { withDeadline } from "../runtime/deadline.ts";
import * as v from "valibot";
import { internal, invalidArgument } from "../runtime/errors.ts";
import { crashPoint } from "../runtime/crash-points.ts";

/**
 * What NodeUnstage needs and the CO does not resend, kept in `<state-dir>/volumes/<id>.json`
 * (read by gc too). Written before the first system change so a crash after any step can be
 * converged on retry; always temp + rename so a reader never sees half a record. One schema, and
 * every reader (node and gc) validates on read: a record is acted on only if it is well-formed.
 */
const Int = v.pipe(v.number(), v.integer());
const Publication = v.object({
  target_path: v.pipe(v.string(), v.startsWith("/")),
  readonly: v.boolean(),
  access_mode: v.string(),
});
export const StagingRecordSchema = v.pipe(
  // Loose: a newer node may add fields an older reader ignores.
  v.looseObject({
    volume_id: v.pipe(v.string(), v.minLength(1, "no volume_id")),
    transport: v.picklist(["nvme-tcp", "loop"], "unknown transport"),
    nqn: v.optional(v.string()),
    nvme_address: v.optional(v.string()),
    nvme_port: v.optional(Int),
    ctrl_loss_tmo: v.optional(Int),
    reconnect_delay: v.optional(Int),
    keep_alive_tmo: v.optional(Int),
    backing_file: v.optional(v.string()),
    staging_path: v.pipe(v.string("no absolute staging_path"), v.startsWith("/", "no absolute staging_path")),
    fs_type: v.optional(v.string(), ""),
    access_type: v.picklist(["mount", "block"], "unknown access_type"),
    access_mode: v.optional(v.string(), ""),
    mount_flags: v.optional(v.array(v.string()), []),
    staged_at: v.string("no staged_at"),
    /** "staging" until the stage path finished once; gc treats both as in use. */
    state: v.optional(v.picklist(["staging", "staged"]), "staging"),
    created_staging_dir: v.optional(v.boolean(), false),
    /** Set just before mkfs and cleared after it: present only while a format of ours is unfinished. */
    formatting: v.optional(v.object({ device: v.string(), fs_type: v.string(), started_at: v.string() })),
    publications: v.optional(v.array(Publication), []),
  }),
  v.check((r) => r.transport !== "nvme-tcp" || typeof r.nqn === "string", "transport nvme-tcp without nqn"),
  v.check((r) => r.transport !== "loop" || typeof r.backing_file === "string", "transport loop without backing_file"),
);

export type StagingRecord = v.InferOutput<typeof StagingRecordSchema>;

/** A parsed JSON value as a staging record of `fileId`, or why it is not one. */
export function parseStagingRecord(value: unknown, fileId: string): StagingRecord | string {
  const r = v.safeParse(StagingRecordSchema, value);
  if (!r.success) {
    const issue = r.issues[0];
    const at = issue?.path?.length ? ` (${issue.path.map((p) => String(p.key)).join(".")})` : "";
    return typeof value !== "object" || value === null || Array.isArray(value)
      ? "not a JSON object"
      : `${issue?.message ?? "malformed"}${at}`;
  }
  if (r.output.volume_id !== fileId)
    return `volume_id ${JSON.stringify(r.output.volume_id)} does not match the file name`;
  return r.output;
}

const IO_TIMEOUT_MS = 5_000;

/** Volume ids become file names: refuse anything that could step outside the directory. */
function fileName(volumeId: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,253}$/.test(volumeId))
    throw invalidArgument("volume_id", `cannot be used as a record name: ${JSON.stringify(volumeId)}`);
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
  const read = (volumeId: string) =>
    io(`read staging record ${volumeId}`, async () => {
      try {
        const text = await readFile(join(dir, fileName(volumeId)), "utf8");
        const record = parseStagingRecord(JSON.parse(text), volumeId);
        // A record we cannot trust is not guessed at: the RPC fails and the file stays for an operator.
        if (typeof record === "string")
          throw internal(`staging record of ${volumeId} in ${dir} is malformed: ${record}`);
        return record;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
        if (e instanceof SyntaxError)
          throw internal(`staging record of ${volumeId} in ${dir} is not JSON: ${e.message}`);
        throw e;
      }
    });
  return {
    dir,
    read,
    write: (record) =>
      io(`write staging record ${record.volume_id}`, async () => {
        // A symlink planted here would carry root's writes anywhere on the host. Made only when missing:
        // every record write of an RPC looks, only the first one on a node makes it.
        const there = await lstat(dir).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== "ENOENT") throw e;
          return null;
        });
        if (!there) await mkdir(dir, { recursive: true, mode: 0o700 });
        if (!(there ?? (await lstat(dir))).isDirectory())
          throw new Error(`${dir} is not a plain directory; refusing to write staging records through it`);
        const final = join(dir, fileName(record.volume_id));
        const temp = `${final}.${process.pid}.${Date.now()}.tmp`;
        await writeFile(temp, JSON.stringify(record, null, 2) + "\n", { mode: 0o600 });
        crashPoint("record.temp-written");
        await rename(temp, final);
        crashPoint(`record.written.${record.state}${record.formatting ? ".formatting" : ""}`);
      }),
    removeTempFiles: () =>
      io("remove temp staging records", async () => {
        let names: string[] = [];
        try {
          names = (await readdir(dir)).filter((n) => /\.json\.\d+\.\d+\.tmp$/.test(n));
        } catch {
          return [];
        }
        for (const n of names) await rm(join(dir, n), { force: true });
        return names;
      }),
    remove: (volumeId) =>
      io(`remove staging record ${volumeId}`, () => rm(join(dir, fileName(volumeId)), { force: true })),
    list: () =>
      io("list staging records", async () => {
        let names: string[] = [];
        try {
          names = (await readdir(dir)).filter((n) => n.endsWith(".json"));
        } catch {
          return [];
        }
        const out: StagingRecord[] = [];
        for (const n of names) {
          const r = await read(n.slice(0, -5)).catch(() => null);
          if (r) out.push(r);
        }
        return out;
      }),
  };
}
