import { posix } from "node:path";
import { sleep } from "../../runtime/deadline.ts";
import { DomainError, internal, notFound, resourceExhausted, unavailable } from "../../runtime/errors.ts";
import type { Logger } from "../../runtime/log.ts";
import type { Backend, Capacity, CreateDiskRequest, Disk, DiskMeta, Snapshot, VolumeParams } from "../backend.ts";
import { SNAPSHOT_PREFIX, VOLUME_PREFIX, isSnapshotId, isVolumeId, nqnForVolume } from "../ids.ts";
import { encodeMeta, isCopying, parseCreationTime, rowToDisk, rowToSnapshot } from "./disk-row.ts";
import { isOutcomeUnknown, isRestError, type RestClient, type Row } from "./rest-client.ts";

export interface RouterOsBackendOptions {
  client: RestClient;
  log: Logger;
  nqnPrefix: string;
  /** NVMe/TCP address given to nodes when the StorageClass names none (the REST host otherwise). */
  defaultNvmeAddress: string;
  /** How long a copy (snapshot, clone) is polled before the RPC returns "still copying". */
  copyTimeoutMs?: number;
  pollIntervalMs?: number;
  /** Deadline for the PUT that starts a copy; the copy itself is then polled. */
  copyStartTimeoutMs?: number;
}

const imgPath = (volumePath: string, slot: string) => posix.join(volumePath, `${slot}.img`);
/** RouterOS file names carry no leading slash. */
const fileName = (path: string) => path.replace(/^\/+/, "");
/** The pool is the filesystem mounted at the first component of the path (`/storage-pool/...`). */
const poolOf = (volumePath: string) => fileName(volumePath).split("/")[0] ?? "";

const NO_SPACE = /space|full/i;
const DUPLICATE = /exist/i;

export function createRouterOsBackend(opts: RouterOsBackendOptions): Backend {
  const { client } = opts;
  const log = opts.log.child({ backend: "routeros", address: client.address });
  const copyTimeoutMs = opts.copyTimeoutMs ?? 50_000;
  const pollMs = opts.pollIntervalMs ?? 500;
  const copyStartMs = opts.copyStartTimeoutMs ?? 10_000;

  async function rowBySlot(slot: string, signal?: AbortSignal): Promise<Row | null> {
    const rows = await client.get<Row[]>("disk", { slot }, signal);
    return rows.find((r) => r.slot === slot) ?? null;
  }

  /** Polls until the copy behind `slot` is done or the copy deadline passes. */
  async function awaitCopy(slot: string, signal?: AbortSignal): Promise<Row | null> {
    const until = Date.now() + copyTimeoutMs;
    for (;;) {
      const row = await rowBySlot(slot, signal);
      if (!row || !isCopying(row) || Date.now() >= until) return row;
      await sleep(pollMs, signal);
    }
  }

  /** Maps a refusal of a write to a domain error; pool full is the one the CO must see as such. */
  function refusal(e: unknown, what: string): never {
    if (isRestError(e)) {
      if (NO_SPACE.test(e.detail)) throw resourceExhausted(`${what}: RouterOS reports the storage pool is full (${e.detail})`);
      throw internal(`${what}: RouterOS refused: ${e.message}`);
    }
    throw e;
  }

  /**
   * Adds a /disk entry. The slot is the idempotency key: on a lost answer we look for the slot
   * instead of sending the add again, and "already exists" means a concurrent add won.
   */
  async function addDisk(slot: string, body: Row, what: string, signal?: AbortSignal, timeoutMs?: number): Promise<Row> {
    try {
      const row = await client.put("disk", body, signal, timeoutMs);
      log.info({ slot, file_path: body["file-path"] }, `${what}: added`);
      return row;
    } catch (e) {
      if (isOutcomeUnknown(e) || (isRestError(e) && DUPLICATE.test(e.detail) && !NO_SPACE.test(e.detail))) {
        const row = await rowBySlot(slot, signal);
        if (row) {
          log.info({ slot, reason: e.message }, `${what}: answer lost or raced, found the slot on read-back`);
          return row;
        }
        if (isOutcomeUnknown(e)) {
          throw unavailable(`${what} for ${slot}: ${e.message}; the slot is absent on read-back, a retry of the RPC will look again before adding`);
        }
      }
      return refusal(e, what);
    }
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
      // The disk is gone already (an earlier attempt died between the two steps): find the file by name.
      : (await client.get<Row[]>("file", undefined, signal)).filter((f) => (f.name ?? "").endsWith(`/${slot}.img`));
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

  async function patchAndVerify(row: Row, body: Row, what: string, check: (r: Row) => boolean, signal?: AbortSignal): Promise<Row> {
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
    log.info({ slot: id }, "removed");
  };

  return {
    kind: "routeros",
    address: client.address,

    async createDisk(req: CreateDiskRequest, signal?: AbortSignal): Promise<Disk> {
      if (!isVolumeId(req.id)) throw internal(`refusing malformed volume id ${req.id}`);
      let row = await rowBySlot(req.id, signal);
      if (!row) {
        const base: Row = {
          type: "file", slot: req.id, "file-path": imgPath(req.volumePath, req.id),
          "nvme-tcp-export": "yes", "nvme-tcp-server-port": String(req.nvmePort ?? 4420),
          "nvme-tcp-server-nqn": nqnForVolume(opts.nqnPrefix, req.id), comment: encodeMeta(req.meta),
        };
        if (req.source) {
          const valid = req.source.kind === "snapshot" ? isSnapshotId(req.source.id) : isVolumeId(req.source.id);
          const src = valid ? await rowBySlot(req.source.id, signal) : null;
          if (!src || isCopying(src)) throw notFound(`content source ${req.source.kind} ${req.source.id} does not exist${src ? " yet (still copying)" : ""}`);
          row = await addDisk(req.id, { ...base, "copy-from": src[".id"]! }, "copy disk", signal, copyStartMs);
        } else {
          row = await addDisk(req.id, { ...base, "file-size": String(req.sizeBytes) }, "create disk", signal);
        }
      }
      if (isCopying(row)) row = (await awaitCopy(req.id, signal)) ?? row;
      // A restore or clone may be asked bigger than its source.
      if (!isCopying(row) && Number(row["file-size"]) < req.sizeBytes) {
        row = await patchAndVerify(row, { "file-size": String(req.sizeBytes) }, `grow copy ${req.id}`, (r) => Number(r["file-size"]) >= req.sizeBytes, signal);
      }
      return rowToDisk(row);
    },

    async getDisk(id, signal) {
      if (!isVolumeId(id)) return null;
      const row = await rowBySlot(id, signal);
      return row ? rowToDisk(row) : null;
    },

    async listDisks(signal) {
      const rows = await client.get<Row[]>("disk", { type: "file" }, signal);
      return rows.filter((r) => (r.slot ?? "").startsWith(VOLUME_PREFIX) && isVolumeId(r.slot!)).map(rowToDisk).sort((a, b) => a.id.localeCompare(b.id));
    },

    deleteDisk: (id, signal) => deleteSlot(id, isVolumeId, signal),

    async growDisk(id, sizeBytes, signal) {
      const row = isVolumeId(id) ? await rowBySlot(id, signal) : null;
      if (!row) throw notFound(`volume ${id} does not exist`);
      if (Number(row["file-size"]) >= sizeBytes) return rowToDisk(row);
      const done = await patchAndVerify(row, { "file-size": String(sizeBytes) }, `grow ${id}`, (r) => Number(r["file-size"]) >= sizeBytes, signal);
      log.info({ volume_id: id, size_bytes: sizeBytes }, "disk grown");
      return rowToDisk(done);
    },

    async setPublications(id: string, meta: DiskMeta, allowedHosts: string[], signal?: AbortSignal) {
      const row = isVolumeId(id) ? await rowBySlot(id, signal) : null;
      if (!row) throw notFound(`volume ${id} does not exist`);
      const allow = allowedHosts.join(",");
      const comment = encodeMeta(meta);
      const done = await patchAndVerify(row, { "nvme-tcp-server-allow-host-name": allow, comment, "nvme-tcp-export": "yes" },
        `restrict export of ${id}`, (r) => (r["nvme-tcp-server-allow-host-name"] ?? "") === allow && r.comment === comment, signal);
      log.info({ volume_id: id, allowed_hosts: allowedHosts }, "export restriction set");
      return rowToDisk(done);
    },

    async capacity(volumePath: string, signal?: AbortSignal): Promise<Capacity> {
      const pool = poolOf(volumePath);
      const rows = await client.get<Row[]>("disk", { "mount-point": pool }, signal);
      const row = rows.find((r) => r["mount-point"] === pool);
      if (!row) throw notFound(`no storage pool mounted at ${pool} on the RDS`);
      const totalBytes = Number(row.size);
      const freeBytes = Number(row.free);
      if (!Number.isFinite(totalBytes) || !Number.isFinite(freeBytes)) throw internal(`pool ${pool}: unreadable size/free (${row.size}/${row.free})`);
      return { totalBytes, freeBytes };
    },

    async createSnapshot(id: string, sourceVolumeId: string, volumePath: string, signal?: AbortSignal): Promise<Snapshot> {
      if (!isSnapshotId(id)) throw internal(`refusing malformed snapshot id ${id}`);
      let row = await rowBySlot(id, signal);
      if (!row) {
        const src = isVolumeId(sourceVolumeId) ? await rowBySlot(sourceVolumeId, signal) : null;
        if (!src) throw notFound(`source volume ${sourceVolumeId} does not exist`);
        const dir = posix.dirname(src["file-path"] ?? imgPath(volumePath, sourceVolumeId));
        // Snapshots are not exported: nobody should attach to them, only copy from them.
        row = await addDisk(id, {
          type: "file", slot: id, "file-path": imgPath(dir, id), "copy-from": src[".id"]!, "nvme-tcp-export": "no",
          comment: encodeMeta({ source: sourceVolumeId }),
        }, "snapshot", signal, copyStartMs);
      }
      if (isCopying(row)) row = (await awaitCopy(id, signal)) ?? row;
      return rowToSnapshot(row);
    },

    async getSnapshot(id, signal) {
      if (!isSnapshotId(id)) return null;
      const row = await rowBySlot(id, signal);
      return row ? rowToSnapshot(row) : null;
    },

    async listSnapshots(signal) {
      const rows = await client.get<Row[]>("disk", { type: "file" }, signal);
      return rows.filter((r) => (r.slot ?? "").startsWith(SNAPSHOT_PREFIX) && isSnapshotId(r.slot!)).map(rowToSnapshot).sort((a, b) => a.id.localeCompare(b.id));
    },

    deleteSnapshot: (id, signal) => deleteSlot(id, isSnapshotId, signal),

    async strayFiles(signal) {
      const [files, disks] = await Promise.all([client.get<Row[]>("file", undefined, signal), client.get<Row[]>("disk", { type: "file" }, signal)]);
      const used = new Set(disks.map((d) => fileName(d["file-path"] ?? "")));
      return files
        .filter((f) => !used.has(f.name ?? ""))
        .map((f) => ({ f, id: /\/([^/]+)\.img$/.exec(f.name ?? "")?.[1] ?? "" }))
        .filter(({ id }) => isVolumeId(id))
        .map(({ f, id }) => ({ volumeId: id, path: `/${f.name}`, sizeBytes: Number(f.size ?? 0), createdAt: parseCreationTime(f["creation-time"]) }));
    },

    async probe(signal) {
      await client.get("system/resource", undefined, signal);
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


