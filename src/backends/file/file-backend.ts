import { open, readdir, rename, stat, truncate, unlink, mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { withDeadline } from "../../runtime/deadline.ts";
import {
  DomainError,
  isDomainError,
  internal,
  notFound,
  resourceExhausted,
  unavailable,
  errorMessage,
} from "../../runtime/errors.ts";
import { completeStdout, describeFailure, ok, type Runner } from "../../runtime/exec.ts";
import type { Logger } from "../../runtime/log.ts";
import type { Backend, Capacity, CreateDiskRequest, Disk, DiskMeta, Snapshot, VolumeParams } from "../backend.ts";
import { isSnapshotId, isVolumeId } from "../ids.ts";
import { readJson, removeTempFiles, writeJsonAtomic } from "./atomic-json.ts";
import { crashPoint } from "../../runtime/crash-points.ts";

export interface FileBackendOptions {
  dir: string;
  runner: Runner;
  log: Logger;
  /** Deadline for one filesystem call (stat, open, rename). */
  opTimeoutMs?: number;
  /** Deadline for one copy (snapshot, clone). */
  copyTimeoutMs?: number;
}

interface DiskSidecar {
  createdAt: number;
  /** The size asked for: a crash mid-create leaves a smaller `.partial`, and the retry finishes it. */
  sizeBytes?: number;
  meta: DiskMeta;
  allowedHosts: string[];
}

interface SnapshotSidecar {
  sourceVolumeId: string;
  createdAt: number;
}

/**
 * Disks as sparse files in one directory: `<id>.img` plus a `<id>.json` sidecar with what the CO
 * does not resend. Snapshots live in `snapshots/`. A file under construction is `<name>.partial`
 * and becomes visible only by rename, so a crash never leaves a half-made disk that looks whole.
 */
export function createFileBackend(opts: FileBackendOptions): Backend {
  const dir = resolve(opts.dir);
  const snapDir = join(dir, "snapshots");
  const opMs = opts.opTimeoutMs ?? 10_000;
  const copyMs = opts.copyTimeoutMs ?? 10 * 60_000;
  const log = opts.log.child({ backend: "file", dir });

  const img = (id: string) => join(dir, `${id}.img`);
  const side = (id: string) => join(dir, `${id}.json`);
  const snapImg = (id: string) => join(snapDir, `${id}.img`);
  const snapSide = (id: string) => join(snapDir, `${id}.json`);

  const fsCall = <T>(what: string, fn: () => Promise<T>, signal?: AbortSignal) =>
    withDeadline(
      what,
      opMs,
      async () => {
        try {
          return await fn();
        } catch (e) {
          if (isDomainError(e)) throw e;
          const code = (e as NodeJS.ErrnoException).code;
          if (code === "ENOSPC") throw resourceExhausted(`${what}: no space left in ${dir}`);
          throw internal(`${what}: ${errorMessage(e)}`, e);
        }
      },
      signal,
    );

  const sizeOf = async (path: string): Promise<number | null> => {
    try {
      return (await stat(path)).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  };

  async function readDisk(id: string): Promise<Disk | null> {
    const size = await sizeOf(img(id));
    if (size === null) {
      const partial = await sizeOf(`${img(id)}.partial`);
      if (partial === null) return null;
      const sc = await readJson<DiskSidecar>(side(id));
      return {
        id,
        sizeBytes: sc?.sizeBytes ?? partial,
        filePath: img(id),
        exported: false,
        allowedHosts: [],
        copying: true,
        createdAt: sc?.createdAt,
        meta: sc?.meta ?? {},
      };
    }
    const sc = await readJson<DiskSidecar>(side(id));
    return {
      id,
      sizeBytes: size,
      filePath: img(id),
      exported: true,
      allowedHosts: sc?.allowedHosts ?? [],
      copying: false,
      createdAt: sc?.createdAt,
      meta: sc?.meta ?? {},
    };
  }

  async function readSnapshot(id: string): Promise<Snapshot | null> {
    const size = await sizeOf(snapImg(id));
    if (size === null) return null;
    const sc = await readJson<SnapshotSidecar>(snapSide(id));
    return {
      id,
      sourceVolumeId: sc?.sourceVolumeId ?? "",
      sizeBytes: size,
      createdAt: sc?.createdAt ?? 0,
      readyToUse: true,
    };
  }

  /** Reflink when the filesystem can, sparse otherwise; in a child with a deadline. */
  async function copyFile(from: string, to: string, signal?: AbortSignal) {
    const r = await opts.runner("cp", ["--reflink=auto", "--sparse=always", from, to], {
      timeoutMs: copyMs,
      signal,
      log,
      logLevel: "info",
    });
    if (r.timedOut) throw new DomainError("deadline-exceeded", `copy ${from} did not finish within ${copyMs} ms`);
    if (!ok(r)) {
      if (/No space left/i.test(r.stderr)) throw resourceExhausted(`copy into ${dir}: no space left`);
      throw internal(`copy failed: ${describeFailure(r)}`);
    }
  }

  async function capacity(): Promise<Capacity> {
    // statfs through a child: the directory may sit on a network filesystem that can hang.
    const r = await opts.runner("stat", ["-f", "-c", "%S %b %a", dir], { timeoutMs: opMs, log });
    if (!ok(r)) throw unavailable(`cannot read free space of ${dir}: ${describeFailure(r)}`);
    const [bs, blocks, avail] = completeStdout(r, `statfs of ${dir}`).trim().split(/\s+/).map(Number);
    if (!bs || blocks === undefined || avail === undefined || Number.isNaN(blocks) || Number.isNaN(avail)) {
      throw internal(`unexpected statfs output for ${dir}: ${r.stdout.trim()}`);
    }
    return { totalBytes: bs * blocks, freeBytes: bs * avail };
  }

  async function ensureDirs() {
    await mkdir(snapDir, { recursive: true, mode: 0o700 });
  }

  return {
    kind: "file",
    address: dir,

    async createDisk(req: CreateDiskRequest, signal?: AbortSignal): Promise<Disk> {
      if (!isVolumeId(req.id)) throw internal(`refusing malformed volume id ${req.id}`);
      const existing = await fsCall("read disk", () => readDisk(req.id), signal);
      if (existing && !existing.copying) return existing;
      let sourcePath: string | undefined;
      if (req.source) {
        const ok = req.source.kind === "snapshot" ? isSnapshotId(req.source.id) : isVolumeId(req.source.id);
        sourcePath = req.source.kind === "snapshot" ? snapImg(req.source.id) : img(req.source.id);
        if (!ok || (await fsCall("stat source", () => sizeOf(sourcePath!), signal)) === null) {
          throw notFound(`content source ${req.source.kind} ${req.source.id} does not exist`);
        }
      }
      await fsCall("prepare directory", ensureDirs, signal);
      const cap = await capacity();
      // Thin files, but a disk larger than what is free could never be filled: refuse it up front.
      if (req.sizeBytes > cap.freeBytes) {
        throw resourceExhausted(`not enough space in ${dir}: ${req.sizeBytes} bytes requested, ${cap.freeBytes} free`);
      }
      const partial = `${img(req.id)}.partial`;
      await fsCall(
        "prepare disk",
        async () => {
          await writeJsonAtomic(side(req.id), {
            createdAt: Date.now(),
            sizeBytes: req.sizeBytes,
            meta: req.meta,
            allowedHosts: [],
          } satisfies DiskSidecar);
        },
        signal,
      );
      crashPoint("file.create.sidecar-written");
      if (sourcePath) await copyFile(sourcePath, partial, signal);
      await fsCall(
        "create disk",
        async () => {
          if (!sourcePath) {
            const fh = await open(partial, "w", 0o600);
            await fh.close();
            crashPoint("file.create.partial-made");
          }
          // Restores and clones may be asked bigger than their source: grow the sparse file.
          if (((await sizeOf(partial)) ?? 0) < req.sizeBytes) await truncate(partial, req.sizeBytes);
          crashPoint("file.create.partial-sized");
          await rename(partial, img(req.id));
        },
        signal,
      );
      crashPoint("file.create.done");
      log.info({ volume_id: req.id, size_bytes: req.sizeBytes, source: req.source?.id }, "disk created");
      const disk = await fsCall("read disk", () => readDisk(req.id), signal);
      if (!disk) throw internal(`disk ${req.id} vanished right after creation`);
      return disk;
    },

    getDisk: (id, signal) => (isVolumeId(id) ? fsCall("read disk", () => readDisk(id), signal) : Promise.resolve(null)),

    listDisks: (signal) =>
      fsCall(
        "list disks",
        async () => {
          const names = await readdir(dir).catch((e) =>
            (e as NodeJS.ErrnoException).code === "ENOENT" ? [] : Promise.reject(e),
          );
          const ids = new Set(names.map((n) => n.replace(/\.img(\.partial)?$/, "")).filter(isVolumeId));
          const disks = await Promise.all([...ids].sort().map(readDisk));
          return disks.filter((d): d is Disk => d !== null);
        },
        signal,
      ),

    deleteDisk: (id, signal) =>
      fsCall(
        "delete disk",
        async () => {
          if (!isVolumeId(id)) return;
          for (const p of [img(id), `${img(id)}.partial`, side(id)]) {
            await unlink(p).catch((e) =>
              (e as NodeJS.ErrnoException).code === "ENOENT" ? undefined : Promise.reject(e),
            );
            crashPoint("file.delete.unlinked");
          }
          log.info({ volume_id: id }, "disk deleted");
        },
        signal,
      ),

    growDisk: (id, sizeBytes, signal) =>
      fsCall(
        "grow disk",
        async () => {
          const d = await readDisk(id);
          if (!d || d.copying) throw notFound(`volume ${id} does not exist`);
          if (sizeBytes > d.sizeBytes) {
            const cap = await capacity();
            if (sizeBytes - d.sizeBytes > cap.freeBytes)
              throw resourceExhausted(`not enough space in ${dir} to grow ${id}`);
            await truncate(img(id), sizeBytes);
            crashPoint("file.grow.truncated");
            log.info({ volume_id: id, size_bytes: sizeBytes }, "disk grown");
          }
          return (await readDisk(id))!;
        },
        signal,
      ),

    setPublications: (id, meta, allowedHosts, signal) =>
      fsCall(
        "record publication",
        async () => {
          const d = await readDisk(id);
          if (!d || d.copying) throw notFound(`volume ${id} does not exist`);
          const sc = (await readJson<DiskSidecar>(side(id))) ?? { createdAt: Date.now(), meta: {}, allowedHosts: [] };
          await writeJsonAtomic(side(id), { ...sc, meta, allowedHosts });
          return (await readDisk(id))!;
        },
        signal,
      ),

    capacity: () => capacity(),

    async createSnapshot(id, sourceVolumeId, _volumePath, signal) {
      const existing = await fsCall("read snapshot", () => readSnapshot(id), signal);
      if (existing) return existing;
      const src = await fsCall(
        "read disk",
        () => (isVolumeId(sourceVolumeId) ? readDisk(sourceVolumeId) : Promise.resolve(null)),
        signal,
      );
      if (!src || src.copying) throw notFound(`source volume ${sourceVolumeId} does not exist`);
      await fsCall(
        "prepare snapshot",
        async () => {
          await ensureDirs();
          await writeJsonAtomic(snapSide(id), { sourceVolumeId, createdAt: Date.now() } satisfies SnapshotSidecar);
        },
        signal,
      );
      crashPoint("file.snapshot.sidecar-written");
      const partial = `${snapImg(id)}.partial`;
      await copyFile(img(sourceVolumeId), partial, signal);
      crashPoint("file.snapshot.copied");
      await fsCall("finish snapshot", () => rename(partial, snapImg(id)), signal);
      crashPoint("file.snapshot.done");
      log.info({ snapshot_id: id, volume_id: sourceVolumeId }, "snapshot created");
      return (await fsCall("read snapshot", () => readSnapshot(id), signal))!;
    },

    getSnapshot: (id, signal) =>
      isSnapshotId(id) ? fsCall("read snapshot", () => readSnapshot(id), signal) : Promise.resolve(null),

    listSnapshots: (signal) =>
      fsCall(
        "list snapshots",
        async () => {
          const names = await readdir(snapDir).catch((e) =>
            (e as NodeJS.ErrnoException).code === "ENOENT" ? [] : Promise.reject(e),
          );
          const ids = names
            .filter((n) => n.endsWith(".img"))
            .map((n) => n.slice(0, -4))
            .filter(isSnapshotId)
            .sort();
          return (await Promise.all(ids.map(readSnapshot))).filter((s): s is Snapshot => s !== null);
        },
        signal,
      ),

    deleteSnapshot: (id, signal) =>
      fsCall(
        "delete snapshot",
        async () => {
          if (!isSnapshotId(id)) return;
          for (const p of [snapImg(id), `${snapImg(id)}.partial`, snapSide(id)]) {
            await unlink(p).catch((e) =>
              (e as NodeJS.ErrnoException).code === "ENOENT" ? undefined : Promise.reject(e),
            );
            crashPoint("file.snapshot-delete.unlinked");
          }
          log.info({ snapshot_id: id }, "snapshot deleted");
        },
        signal,
      ),

    // Here the file is the disk: a file without a disk cannot exist.
    strayFiles: async () => [],

    async probe() {
      await fsCall("probe directory", ensureDirs);
      await capacity();
    },

    /** What crashed writes left: temp files of sidecars (never read) go at start-up. */
    async recover() {
      const removed = [...(await removeTempFiles(dir)), ...(await removeTempFiles(snapDir))];
      if (removed.length) log.info({ removed }, "removed temp files left by an interrupted write");
    },

    volumeContext: (disk: Disk, _params: VolumeParams) => ({ transport: "loop", backingFile: disk.filePath }),
  };
}
