import type { Disk, DiskMeta, Snapshot } from "../backend.ts";
import type { Row } from "./rest-client.ts";

/**
 * Mapping between RouterOS `/disk` rows (every value a string) and our Disk/Snapshot. What the CO
 * does not resend (content source, parameter digest, publications) lives in the disk's comment,
 * tagged so that a comment an operator wrote is never mistaken for ours.
 */
const COMMENT_TAG = "rds-csi:";

export function encodeMeta(meta: DiskMeta): string {
  const compact: Record<string, unknown> = {};
  if (meta.source) compact.src = meta.source;
  if (meta.paramsDigest) compact.p = meta.paramsDigest;
  if (meta.publishedTo?.length) compact.h = meta.publishedTo;
  if (meta.publishMode) compact.m = meta.publishMode;
  if (meta.copiedAt) compact.t = meta.copiedAt;
  return COMMENT_TAG + JSON.stringify(compact);
}

export function decodeMeta(comment: string | undefined): DiskMeta {
  if (!comment?.startsWith(COMMENT_TAG)) return {};
  try {
    const o = JSON.parse(comment.slice(COMMENT_TAG.length)) as {
      src?: unknown;
      p?: unknown;
      h?: unknown;
      m?: unknown;
      t?: unknown;
    };
    return {
      ...(typeof o.src === "string" ? { source: o.src } : {}),
      ...(typeof o.p === "string" ? { paramsDigest: o.p } : {}),
      ...(Array.isArray(o.h) ? { publishedTo: o.h.filter((x): x is string => typeof x === "string") } : {}),
      ...(typeof o.m === "string" ? { publishMode: o.m } : {}),
      ...(typeof o.t === "number" ? { copiedAt: o.t } : {}),
    };
  } catch {
    return {};
  }
}

const truthy = (v: string | undefined) => v === "true" || v === "yes";
const num = (v: string | undefined) => (v === undefined || v === "" ? NaN : Number(v));

/** RouterOS prints "2026-11-21 11:35:44" (or "nov/21/2026 11:35:44" on old versions); best effort. */
export function parseCreationTime(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const t = Date.parse(v.includes(" ") && /^\d{4}-/.test(v) ? `${v.replace(" ", "T")}Z` : v);
  return Number.isNaN(t) ? undefined : t;
}

/** `status` is not in the `/disk` reference: only a row that has it and says so is known to be copying. */
export const statusSaysCopying = (row: Row) => /copy/i.test(row.status ?? "");

/** Our tagged comment, if this row carries one. */
export const hasOurComment = (row: Row) => (row.comment ?? "").startsWith(COMMENT_TAG);

/** The `/file` entry's time: `last-modified` (Files page, 7.x) or `creation-time` (older versions). */
export const fileTime = (f: Row | undefined) => parseCreationTime(f?.["last-modified"] ?? f?.["creation-time"]);

export function rowToDisk(row: Row, meta: DiskMeta, copying: boolean): Disk {
  const allow = row["nvme-tcp-server-allow-host-name"] ?? "";
  return {
    id: row.slot ?? "",
    sizeBytes: num(row["file-size"] ?? row.size),
    filePath: row["file-path"] ?? "",
    nqn: row["nvme-tcp-server-nqn"] || row.slot,
    exported: truthy(row["nvme-tcp-export"]),
    allowedHosts: allow ? allow.split(",").filter(Boolean) : [],
    copying,
    ...(createdAtOf(row, meta) !== undefined ? { createdAt: createdAtOf(row, meta) } : {}),
    meta,
  };
}

const createdAtOf = (row: Row, meta: DiskMeta) => parseCreationTime(row["creation-time"]) ?? meta.copiedAt;

/** `createdAt` must be a real time (CSI): the caller supplies one where the row and meta have none. */
export function rowToSnapshot(row: Row, meta: DiskMeta, copying: boolean, fallbackCreatedAt: number): Snapshot {
  return {
    id: row.slot ?? "",
    sourceVolumeId: meta.source ?? "",
    sizeBytes: num(row["file-size"] ?? row.size),
    createdAt: createdAtOf(row, meta) ?? fallbackCreatedAt,
    readyToUse: !copying,
  };
}
