import { join, posix } from "node:path";
import { DomainError, errorMessage, internal, notFound, resourceExhausted, unavailable } from "../../runtime/errors.ts";
import type { Logger } from "../../runtime/log.ts";
import type { Backend, Capacity, CreateDiskRequest, Disk, DiskMeta, Snapshot, VolumeParams } from "../backend.ts";
import { SNAPSHOT_PREFIX, VOLUME_PREFIX, isSnapshotId, isVolumeId, nqnForVolume } from "../ids.ts";
import {
  decodeMeta,
  encodeMeta,
  fileTime,
  hasOurComment,
  parseCreationTime,
  rowToDisk,
  rowToSnapshot,
  statusSaysCopying,
} from "./disk-row.ts";
import { UNDETECTED, describeFeatures, detectFeatures, type RouterOsFeatures } from "./features.ts";
import { createSlotStore, type MetaStore, type SlotStore } from "./meta-store.ts";
import { isOutcomeUnknown, isRestError, type RestClient, type Row } from "./rest-client.ts";

export interface RouterOsBackendOptions {
  client: RestClient;
  log: Logger;
  nqnPrefix: string;
  /** NVMe/TCP address given to nodes when the StorageClass names none (the REST host otherwise). */
  defaultNvmeAddress: string;
  /**
   * Deadline of the add that copies a disk (snapshot, clone, restore). REST adds are synchronous and the
   * router cuts a request at 60 s (REST API page), so the default is the router's own limit.
   */
  copyTimeoutMs?: number;
  /** Directory for `routeros-meta.json`, used when the router's `/disk` rows take no `comment`. */
  stateDir?: string;
}

export const DEFAULT_COPY_TIMEOUT_MS = 60_000;

/** Without a state dir (tests of the mapping alone): the same store, in memory. */
function memorySlotStore<T>(): SlotStore<T> {
  const m = new Map<string, T>();
  return {
    path: "(memory)",
    get: async (k) => m.get(k),
    set: async (k, v) => {
      m.set(k, v);
    },
    delete: async (k) => {
      m.delete(k);
    },
  };
}
/** A slot no disk has: reading it exercises `/disk` (what every RPC needs) at the cost of an empty answer. */
const PROBE_SLOT = "rds-csi-probe";

const imgPath = (volumePath: string, slot: string) => posix.join(volumePath, `${slot}.img`);
/** RouterOS file names carry no leading slash. */
const fileName = (path: string) => path.replace(/^\/+/, "");
/** The pool is the filesystem mounted at the first component of the path (`/storage-pool/...`). */
const poolOf = (volumePath: string) => fileName(volumePath).split("/")[0] ?? "";

const NO_SPACE = /space|full/i;
/**
 * RouterOS words a duplicate `failure: already have such …`; other menus and versions say "exists".
 * Only for the log: any 400 on an add is read back, and a row that is ours is the answer.
 */
const DUPLICATE = /already have|exist/i;
const NO_COMMENT = /unknown parameter comment/i;

/** What an add ended in: the row (ours, however it got there), or nothing known to have happened. */
type AddOutcome = { row: Row } | { unknown: string };

export function createRouterOsBackend(opts: RouterOsBackendOptions): Backend & { features(): RouterOsFeatures } {
  const { client } = opts;
  const log = opts.log.child({ backend: "routeros", address: client.address });
  const copyTimeoutMs = opts.copyTimeoutMs ?? DEFAULT_COPY_TIMEOUT_MS;
  const store: MetaStore | undefined = opts.stateDir
    ? createSlotStore(join(opts.stateDir, "routeros-meta.json"))
    : undefined;
  let features: RouterOsFeatures = UNDETECTED;
  let detected = false;
  /**
   * Copy adds whose outcome is unknown: slot → when sent. No second copy-from while one may run; kept
   * on the state dir so that a restarted controller does not send it again either.
   */
  const pendingCopies: SlotStore<number> = opts.stateDir
    ? createSlotStore(join(opts.stateDir, "routeros-pending-copies.json"))
    : memorySlotStore();
  /** Copies seen complete (they never become incomplete again): saves a /file read per look. */
  const completeCopies = new Set<string>();
  /** First time this process saw a snapshot that shows no time anywhere: its creation time, never 0. */
  const firstSeen = new Map<string, number>();

  async function rowBySlot(slot: string, signal?: AbortSignal): Promise<Row | null> {
    const rows = await client.get<Row[]>("disk", { slot }, signal);
    return rows.find((r) => r.slot === slot) ?? null;
  }

  const fileRow = async (path: string, signal?: AbortSignal) =>
    (await client.get<Row[]>("file", { name: fileName(path) }, signal)).find((f) => f.name === fileName(path));

  /** Metadata: our tagged comment where the router keeps comments, the state-dir record otherwise. */
  async function metaOf(row: Row): Promise<DiskMeta> {
    if (hasOurComment(row)) return decodeMeta(row.comment);
    return (await store?.get(row.slot ?? "")) ?? {};
  }

  const commentsWork = () => features.comment !== "no" || !store;

  async function saveMetaOffRouter(slot: string, meta: DiskMeta) {
    if (!store)
      throw internal(
        `RouterOS ${client.address} keeps no comment on /disk and no --state-dir record store is configured: metadata of ${slot} would be lost`,
      );
    await store.set(slot, meta);
  }

  function noComments(why: string) {
    if (features.comment === "no") return;
    features = { ...features, comment: "no" };
    log.warn(
      { reason: why, store: store?.path },
      "RouterOS /disk takes no comment: metadata (content sources, publications) is kept on the controller's state dir, which must then be on persistent storage",
    );
  }

  /**
   * Is the copy behind `row` complete? From documented fields: its `/file` size has reached the
   * source's `file-size` (or the copy's own, where the source has since grown or is gone). A row whose
   * (undocumented) `status` says copying is not complete whatever the sizes say.
   */
  async function copyComplete(row: Row, meta: DiskMeta, signal?: AbortSignal, files?: Row[]): Promise<boolean> {
    const slot = row.slot ?? "";
    if (completeCopies.has(slot)) return true;
    if (statusSaysCopying(row)) return false;
    const src = meta.source ? await rowBySlot(meta.source, signal) : null;
    const sizes = [row, src].map((r) => Number(r?.["file-size"])).filter((n) => Number.isFinite(n) && n > 0);
    const want = Math.min(...sizes);
    const f = files
      ? files.find((x) => x.name === fileName(row["file-path"] ?? ""))
      : await fileRow(row["file-path"] ?? "", signal);
    const done = !!f && Number.isFinite(want) && Number(f.size) >= want;
    if (done) completeCopies.add(slot);
    return done;
  }

  /** A disk made by a copy is complete once seen so; plain disks always are. */
  const isCopy = (row: Row, meta: DiskMeta) => !!meta.source || statusSaysCopying(row);

  async function toDisk(row: Row, signal?: AbortSignal, files?: Row[]): Promise<Disk> {
    const meta = await metaOf(row);
    const copying = isCopy(row, meta) ? !(await copyComplete(row, meta, signal, files)) : false;
    const disk = rowToDisk(row, meta, copying);
    // Without a creation-time, the backing file's last change is a lower bound of the age: gc's grace
    // then errs on the side of keeping.
    if (disk.createdAt === undefined && files) {
      const t = fileTime(files.find((x) => x.name === fileName(row["file-path"] ?? "")));
      if (t !== undefined) disk.createdAt = t;
    }
    return disk;
  }

  /**
   * Where the row and our metadata show no time: the `/file` entry's time, else the moment this
   * process first saw it complete (recorded, so that it stays the same).
   */
  async function toSnapshot(row: Row, signal?: AbortSignal, files?: Row[]): Promise<Snapshot> {
    const meta = await metaOf(row);
    const copying = !(await copyComplete(row, meta, signal, files));
    const slot = row.slot ?? "";
    let fallback = parseCreationTime(row["creation-time"]) ?? meta.copiedAt;
    if (fallback === undefined) {
      const f = files
        ? files.find((x) => x.name === fileName(row["file-path"] ?? ""))
        : await fileRow(row["file-path"] ?? "", signal);
      fallback = fileTime(f);
    }
    if (fallback === undefined) {
      fallback = firstSeen.get(slot) ?? Date.now();
      firstSeen.set(slot, fallback);
      if (!copying)
        await recordCopiedAt(row, meta, fallback, signal).catch((e) =>
          log.warn({ slot, err: errorMessage(e) }, "could not record when the copy was seen complete"),
        );
    }
    return rowToSnapshot(row, meta, copying, fallback);
  }

  /** Keeps "seen complete at" with the snapshot's metadata where the router shows no time of its own. */
  async function recordCopiedAt(row: Row, meta: DiskMeta, at: number, signal?: AbortSignal) {
    const next = { ...meta, copiedAt: at };
    if (!commentsWork()) return saveMetaOffRouter(row.slot!, next);
    const comment = encodeMeta(next);
    await patchAndVerify(row, { comment }, `record copy time of ${row.slot}`, (r) => r.comment === comment, signal);
  }

  /** Maps a refusal of a write to a domain error; pool full is the one the CO must see as such. */
  function refusal(e: unknown, what: string): never {
    if (isRestError(e)) {
      if (NO_SPACE.test(e.detail))
        throw resourceExhausted(`${what}: RouterOS reports the storage pool is full (${e.detail})`);
      throw internal(`${what}: RouterOS refused: ${e.message}`);
    }
    throw e;
  }

  /** A row in our slot with the backing file we asked for: the same add, whoever sent it. */
  const isOurs = (row: Row | null, body: Row): row is Row =>
    !!row && row.slot === body.slot && fileName(row["file-path"] ?? "") === fileName(body["file-path"] ?? "");

  /**
   * Adds a /disk entry. The slot is the idempotency key: on a lost answer, a "Session closed", a
   * duplicate or any other 400 we read the slot back instead of sending the add again; a row there
   * with our backing file means our add (or a concurrent one for the same name) won.
   */
  async function addDisk(body: Row, what: string, signal?: AbortSignal, timeoutMs?: number): Promise<AddOutcome> {
    const slot = body.slot!;
    try {
      const row = await client.put("disk", body, signal, timeoutMs);
      if (body.comment !== undefined && features.comment === "unknown") features = { ...features, comment: "yes" };
      log.info({ slot, file_path: body["file-path"] }, `${what}: added`);
      return { row };
    } catch (e) {
      const mayHaveHappened = isOutcomeUnknown(e) || (isRestError(e) && e.status === 400);
      if (!mayHaveHappened) return refusal(e, what);
      let row: Row | null;
      try {
        row = await rowBySlot(slot, signal);
      } catch (readErr) {
        // Still unknown: whoever called must not take this as "not added".
        if (isOutcomeUnknown(e))
          return { unknown: `${e.message}; the read-back failed too (${errorMessage(readErr)})` };
        throw readErr;
      }
      if (isOurs(row, body)) {
        const how = isOutcomeUnknown(e)
          ? "answer lost or cut"
          : DUPLICATE.test(e.detail)
            ? "a concurrent add won"
            : "refused, yet the slot is ours";
        log.info({ slot, reason: errorMessage(e) }, `${what}: ${how}; found the slot on read-back`);
        return { row };
      }
      if (row)
        throw internal(
          `${what}: slot ${slot} exists with another backing file (${row["file-path"]}), not ours; refusing to use it`,
        );
      if (isOutcomeUnknown(e)) return { unknown: e.message };
      if (isRestError(e) && NO_COMMENT.test(e.detail) && body.comment !== undefined) {
        // Refused as a whole (the slot is absent): the router has no comment on /disk. Keep the metadata
        // on the state dir first, then add without it.
        noComments(e.detail);
        const { comment, ...rest } = body;
        await saveMetaOffRouter(slot, decodeMeta(comment));
        return addDisk(rest, what, signal, timeoutMs);
      }
      return refusal(e, what);
    }
  }

  /** Body of an add: the comment only while the router may take one, the state-dir record otherwise. */
  async function withMeta(body: Row, meta: DiskMeta): Promise<Row> {
    if (commentsWork()) return { ...body, comment: encodeMeta(meta) };
    await saveMetaOffRouter(body.slot!, meta);
    return body;
  }

  /**
   * Adds a copy. The add is synchronous and gets the copy deadline; when its outcome is unknown (our
   * deadline, the router's 60 s "Session closed", a dropped connection) the slot is read back, and no
   * second copy-from is sent for it while the first may still be running (twice the copy deadline).
   */
  async function addCopy(body: Row, what: string, signal?: AbortSignal): Promise<Row | null> {
    const slot = body.slot!;
    const sentAt = await pendingCopies.get(slot);
    if (sentAt !== undefined && Date.now() - sentAt < 2 * copyTimeoutMs) {
      const row = await rowBySlot(slot, signal);
      if (isOurs(row, body)) {
        await pendingCopies.delete(slot);
        return row;
      }
      throw unavailable(
        `${what} for ${slot}: a copy-from sent ${Math.round((Date.now() - sentAt) / 1000)} s ago has an unknown outcome and the slot is not there; no second copy is sent before ${new Date(sentAt + 2 * copyTimeoutMs).toISOString()}`,
      );
    }
    // Recorded before the add goes out: a crash during the add must not lead to a second one.
    await pendingCopies.set(slot, Date.now());
    // addDisk throws only when the copy is known not to have been added (refused, or never sent).
    const out = await addDisk(body, what, signal, copyTimeoutMs).catch(async (e) => {
      await pendingCopies.delete(slot);
      throw e;
    });
    if ("row" in out) {
      await pendingCopies.delete(slot);
      return out.row;
    }
    throw unavailable(
      `${what} for ${slot}: ${out.unknown}; the slot was not found; the copy is not sent again before ${new Date(Date.now() + 2 * copyTimeoutMs).toISOString()}`,
    );
  }

  /** Removes a /disk entry by .id; on a lost answer, reads back by slot. */
  async function removeRow(row: Row, what: string, signal?: AbortSignal) {
    try {
      await client.remove(`disk/${encodeURIComponent(row[".id"]!)}`, signal);
    } catch (e) {
      if (isRestError(e) && e.status === 404) return;
      if (isOutcomeUnknown(e)) {
        if (!(await rowBySlot(row.slot!, signal))) return;
        throw unavailable(`${what}: ${e.message}; the disk is still present`);
      }
      refusal(e, what);
    }
  }

  /** Removes the backing file(s) of a slot; RouterOS does not do this when the disk goes. */
  async function removeFiles(slot: string, knownPath: string | undefined, signal?: AbortSignal) {
    const rows = knownPath
      ? await client.get<Row[]>("file", { name: fileName(knownPath) }, signal)
      : // The disk is gone already (an earlier attempt died between the two steps): find the file by name.
        (await client.get<Row[]>("file", undefined, signal)).filter((f) => (f.name ?? "").endsWith(`/${slot}.img`));
    for (const f of rows) {
      try {
        await client.remove(`file/${encodeURIComponent(f[".id"]!)}`, signal);
        log.info({ slot, file: f.name }, "backing file removed");
      } catch (e) {
        if (isRestError(e) && e.status === 404) continue;
        if (isOutcomeUnknown(e)) {
          const left = await client.get<Row[]>("file", { name: f.name! }, signal);
          if (left.length === 0) continue;
        }
        throw e;
      }
    }
  }

  async function patchAndVerify(
    row: Row,
    body: Row,
    what: string,
    check: (r: Row) => boolean,
    signal?: AbortSignal,
  ): Promise<Row> {
    try {
      return await client.patch(`disk/${encodeURIComponent(row[".id"]!)}`, body, signal);
    } catch (e) {
      if (isOutcomeUnknown(e)) {
        const now = await rowBySlot(row.slot!, signal);
        if (now && check(now)) return now;
        throw unavailable(`${what}: ${e.message}; read-back shows it not applied`);
      }
      if (isRestError(e) && e.status === 404) throw notFound(`${what}: disk ${row.slot} disappeared`);
      return refusal(e, what);
    }
  }

  const deleteSlot = async (id: string, isValid: (id: string) => boolean, signal?: AbortSignal) => {
    if (!isValid(id)) return;
    const row = await rowBySlot(id, signal);
    if (row) await removeRow(row, `remove ${id}`, signal);
    await removeFiles(id, row?.["file-path"], signal);
    await store?.delete(id);
    completeCopies.delete(id);
    firstSeen.delete(id);
    log.info({ slot: id }, "removed");
  };

  /** Reads the router's version and its `/disk` rows, and records which undocumented fields exist. */
  async function detect(signal?: AbortSignal) {
    const [res, rows] = await Promise.all([
      // The version is for the log and doctor only: a router that will not tell it is still usable.
      client.get<Row>("system/resource", undefined, signal).catch((e) => {
        log.warn({ err: errorMessage(e) }, "RouterOS version not readable from /system/resource");
        return undefined;
      }),
      client.get<Row[]>("disk", { type: "file" }, signal),
    ]);
    features = detectFeatures(rows, typeof res?.version === "string" ? res.version : undefined, features);
    detected = true;
    log.info({ version: features.version, fields: describeFeatures(features) }, "RouterOS features detected");
  }

  const sourceOk = (source: CreateDiskRequest["source"]) =>
    !!source && (source.kind === "snapshot" ? isSnapshotId(source.id) : isVolumeId(source.id));

  return {
    kind: "routeros",
    address: client.address,
    features: () => ({ ...features }),

    async createDisk(req: CreateDiskRequest, signal?: AbortSignal): Promise<Disk> {
      if (!isVolumeId(req.id)) throw internal(`refusing malformed volume id ${req.id}`);
      let row = await rowBySlot(req.id, signal);
      if (!row) {
        const base: Row = {
          type: "file",
          slot: req.id,
          "file-path": imgPath(req.volumePath, req.id),
          "nvme-tcp-export": "yes",
          "nvme-tcp-server-port": String(req.nvmePort ?? 4420),
          "nvme-tcp-server-nqn": nqnForVolume(opts.nqnPrefix, req.id),
        };
        if (req.source) {
          const src = sourceOk(req.source) ? await rowBySlot(req.source.id, signal) : null;
          const srcMeta = src ? await metaOf(src) : {};
          const srcReady = !!src && (!isCopy(src, srcMeta) || (await copyComplete(src, srcMeta, signal)));
          if (!src || !srcReady)
            throw notFound(
              `content source ${req.source.kind} ${req.source.id} does not exist${src ? " yet (still copying)" : ""}`,
            );
          row = await addCopy(await withMeta({ ...base, "copy-from": src[".id"]! }, req.meta), "copy disk", signal);
        } else {
          const out = await addDisk(
            await withMeta({ ...base, "file-size": String(req.sizeBytes) }, req.meta),
            "create disk",
            signal,
          );
          if ("unknown" in out)
            throw unavailable(
              `create disk for ${req.id}: ${out.unknown}; the slot was not found, a retry of the RPC reads it back again before adding`,
            );
          row = out.row;
        }
      }
      const disk = await toDisk(row!, signal);
      // A restore or clone may be asked bigger than its source.
      if (!disk.copying && disk.sizeBytes < req.sizeBytes && disk.meta.source) {
        const grown = await patchAndVerify(
          row!,
          { "file-size": String(req.sizeBytes) },
          `grow copy ${req.id}`,
          (r) => Number(r["file-size"]) >= req.sizeBytes,
          signal,
        );
        return rowToDisk(grown, disk.meta, false);
      }
      return disk;
    },

    async getDisk(id, signal) {
      if (!isVolumeId(id)) return null;
      const row = await rowBySlot(id, signal);
      return row ? toDisk(row, signal) : null;
    },

    async listDisks(signal) {
      const rows = (await client.get<Row[]>("disk", { type: "file" }, signal)).filter(
        (r) => (r.slot ?? "").startsWith(VOLUME_PREFIX) && isVolumeId(r.slot!),
      );
      const metas = await Promise.all(rows.map(metaOf));
      // One /file read for every copy not yet seen complete and every row without a time, instead of one per disk.
      const needFiles = rows.some(
        (r, i) => (isCopy(r, metas[i]!) && !completeCopies.has(r.slot!)) || !("creation-time" in r),
      );
      const files = needFiles ? await client.get<Row[]>("file", undefined, signal) : [];
      const disks = await Promise.all(rows.map((r) => toDisk(r, signal, files)));
      return disks.sort((a, b) => a.id.localeCompare(b.id));
    },

    deleteDisk: (id, signal) => deleteSlot(id, isVolumeId, signal),

    async growDisk(id, sizeBytes, signal) {
      const row = isVolumeId(id) ? await rowBySlot(id, signal) : null;
      if (!row) throw notFound(`volume ${id} does not exist`);
      if (Number(row["file-size"]) >= sizeBytes) return toDisk(row, signal);
      const done = await patchAndVerify(
        row,
        { "file-size": String(sizeBytes) },
        `grow ${id}`,
        (r) => Number(r["file-size"]) >= sizeBytes,
        signal,
      );
      log.info({ volume_id: id, size_bytes: sizeBytes }, "disk grown");
      return toDisk(done, signal);
    },

    async setPublications(id: string, meta: DiskMeta, allowedHosts: string[], signal?: AbortSignal) {
      const row = isVolumeId(id) ? await rowBySlot(id, signal) : null;
      if (!row) throw notFound(`volume ${id} does not exist`);
      const allow = allowedHosts.join(",");
      const body: Row = { "nvme-tcp-server-allow-host-name": allow, "nvme-tcp-export": "yes" };
      const onRouter = commentsWork();
      // Without comments the record goes first: a publication must never exist only on the router.
      if (onRouter) body.comment = encodeMeta(meta);
      else await saveMetaOffRouter(id, meta);
      let done: Row;
      try {
        done = await patchAndVerify(
          row,
          body,
          `restrict export of ${id}`,
          (r) => (r["nvme-tcp-server-allow-host-name"] ?? "") === allow && (!onRouter || r.comment === body.comment),
          signal,
        );
      } catch (e) {
        if (!(onRouter && e instanceof DomainError && NO_COMMENT.test(e.message))) throw e;
        noComments(e.message);
        await saveMetaOffRouter(id, meta);
        delete body.comment;
        done = await patchAndVerify(
          row,
          body,
          `restrict export of ${id}`,
          (r) => (r["nvme-tcp-server-allow-host-name"] ?? "") === allow,
          signal,
        );
      }
      log.info({ volume_id: id, allowed_hosts: allowedHosts }, "export restriction set");
      return rowToDisk(done, onRouter && hasOurComment(done) ? decodeMeta(done.comment) : meta, false);
    },

    async capacity(volumePath: string, signal?: AbortSignal): Promise<Capacity> {
      const pool = poolOf(volumePath);
      const rows = await client.get<Row[]>("disk", { "mount-point": pool }, signal);
      const row = rows.find((r) => r["mount-point"] === pool);
      if (!row) throw notFound(`no storage pool mounted at ${pool} on the RDS`);
      const totalBytes = Number(row.size);
      const freeBytes = Number(row.free);
      if (!Number.isFinite(totalBytes) || !Number.isFinite(freeBytes))
        throw internal(`pool ${pool}: unreadable size/free (${row.size}/${row.free})`);
      return { totalBytes, freeBytes };
    },

    async createSnapshot(
      id: string,
      sourceVolumeId: string,
      volumePath: string,
      signal?: AbortSignal,
    ): Promise<Snapshot> {
      if (!isSnapshotId(id)) throw internal(`refusing malformed snapshot id ${id}`);
      let row = await rowBySlot(id, signal);
      if (!row) {
        const src = isVolumeId(sourceVolumeId) ? await rowBySlot(sourceVolumeId, signal) : null;
        if (!src) throw notFound(`source volume ${sourceVolumeId} does not exist`);
        const dir = posix.dirname(src["file-path"] ?? imgPath(volumePath, sourceVolumeId));
        // Snapshots are not exported: nobody should attach to them, only copy from them.
        row = await addCopy(
          await withMeta(
            {
              type: "file",
              slot: id,
              "file-path": imgPath(dir, id),
              "copy-from": src[".id"]!,
              "nvme-tcp-export": "no",
            },
            { source: sourceVolumeId },
          ),
          "snapshot",
          signal,
        );
      }
      return toSnapshot(row!, signal);
    },

    async getSnapshot(id, signal) {
      if (!isSnapshotId(id)) return null;
      const row = await rowBySlot(id, signal);
      return row ? toSnapshot(row, signal) : null;
    },

    async listSnapshots(signal) {
      const rows = (await client.get<Row[]>("disk", { type: "file" }, signal)).filter(
        (r) => (r.slot ?? "").startsWith(SNAPSHOT_PREFIX) && isSnapshotId(r.slot!),
      );
      const files = rows.length ? await client.get<Row[]>("file", undefined, signal) : [];
      const snaps = await Promise.all(rows.map((r) => toSnapshot(r, signal, files)));
      return snaps.sort((a, b) => a.id.localeCompare(b.id));
    },

    deleteSnapshot: (id, signal) => deleteSlot(id, isSnapshotId, signal),

    async strayFiles(signal) {
      const [files, disks] = await Promise.all([
        client.get<Row[]>("file", undefined, signal),
        client.get<Row[]>("disk", { type: "file" }, signal),
      ]);
      const used = new Set(disks.map((d) => fileName(d["file-path"] ?? "")));
      return files
        .filter((f) => !used.has(f.name ?? ""))
        .map((f) => ({ f, id: /\/([^/]+)\.img$/.exec(f.name ?? "")?.[1] ?? "" }))
        .filter(({ id }) => isVolumeId(id))
        .map(({ f, id }) => ({
          volumeId: id,
          path: `/${f.name}`,
          sizeBytes: Number(f.size ?? 0),
          createdAt: fileTime(f),
        }));
    },

    /**
     * The first successful check detects the router's features; later ones read `/disk` (what every
     * RPC needs), not `/system/resource`, so that a hanging `/disk` cannot hide behind a healthy router.
     */
    async probe(signal) {
      if (!detected) return detect(signal);
      await client.get("disk", { slot: PROBE_SLOT }, signal);
    },

    volumeContext(disk: Disk, params: VolumeParams) {
      return {
        transport: "nvme-tcp",
        nqn: disk.nqn ?? nqnForVolume(opts.nqnPrefix, disk.id),
        nvmeAddress: params.nvmeAddress ?? opts.defaultNvmeAddress,
        nvmePort: String(params.nvmePort),
        volumePath: posix.dirname(disk.filePath) || params.volumePath,
        ctrlLossTmo: String(params.ctrlLossTmo),
        reconnectDelay: String(params.reconnectDelay),
        keepAliveTmo: String(params.keepAliveTmo),
      };
    },
  };
}
