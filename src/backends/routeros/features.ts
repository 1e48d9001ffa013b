import type { Row } from "./rest-client.ts";

/**
 * Fields the controller would like on `/disk` rows but that MikroTik's `/disk` reference does not list.
 * They are detected at run time instead of assumed (docs/routeros.md has the table of fallbacks).
 */
export type Presence = "yes" | "no" | "unknown";

export interface RouterOsFeatures {
  /** `version` of `/system/resource`, e.g. `7.16 (stable)`. */
  version?: string;
  /** Can a `/disk` row carry our metadata? `unknown` until a row shows one or an add proves it either way. */
  comment: Presence;
  /** Do rows have a creation time? Without it, snapshot times come from `/file` or from what we saw. */
  creationTime: Presence;
  /** Do rows say when a copy is running? Without it, completion is read from file sizes alone. */
  status: Presence;
}

export const UNDETECTED: RouterOsFeatures = { comment: "unknown", creationTime: "unknown", status: "unknown" };

/**
 * What the rows of `/disk?type=file` show. Read-only fields are on every row when the router has them,
 * so rows without them mean "no"; a comment is only printed when set, so its absence proves nothing.
 */
export function detectFeatures(
  rows: Row[],
  version: string | undefined,
  before: RouterOsFeatures = UNDETECTED,
): RouterOsFeatures {
  const on = (field: string): Presence =>
    rows.length === 0
      ? before[field === "status" ? "status" : "creationTime"]
      : rows.some((r) => field in r)
        ? "yes"
        : "no";
  return {
    ...(version ? { version } : {}),
    comment: rows.some((r) => "comment" in r) ? "yes" : before.comment,
    creationTime: on("creation-time"),
    status: on("status"),
  };
}

/** One line per field for logs and doctor: what was found and what the controller does about it. */
export function describeFeatures(f: RouterOsFeatures): { field: string; presence: Presence; effect: string }[] {
  return [
    {
      field: "comment",
      presence: f.comment,
      effect:
        f.comment === "no"
          ? "metadata (content source, parameter digest, publications) kept in <state-dir>/routeros-meta.json; idempotency by slot and size"
          : "metadata kept in the disk's comment",
    },
    {
      field: "creation-time",
      presence: f.creationTime,
      effect:
        f.creationTime === "no"
          ? "snapshot creation_time from the /file entry's time, else when the controller saw the copy finish"
          : "snapshot creation_time from the disk row",
    },
    {
      field: "status",
      presence: f.status,
      effect:
        f.status === "no"
          ? "a copy is complete when its /file size reaches the source's file-size"
          : "a copy is complete when status says so and its /file size reaches the source's file-size",
    },
  ];
}
