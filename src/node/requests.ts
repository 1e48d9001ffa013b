import { invalidArgument } from "../runtime/errors.ts";
import { FS_TYPES, isAccessMode, multiNodeWriteProblem, type FsType } from "../csi/capabilities.ts";

/**
 * Validation of Node RPC requests as decoded by src/csi/proto.ts (snake_case, enums as names,
 * `access_type` naming the oneof). Every error names the field; nothing is touched before.
 */

export interface Capability {
  accessType: "mount" | "block";
  accessMode: string;
  fsType: FsType;
  mountFlags: string[];
}

const SAFE_FLAG = /^[A-Za-z0-9_][A-Za-z0-9_=.:-]*$/;

export function requireString(req: any, field: string): string {
  const v = req?.[field];
  if (typeof v !== "string" || v.length === 0) throw invalidArgument(field, "is required");
  if (v.includes("\0")) throw invalidArgument(field, "must not contain NUL");
  return v;
}

export function parseCapability(req: any, field = "volume_capability"): Capability {
  const cap = req?.[field];
  if (!cap || typeof cap !== "object") throw invalidArgument(field, "is required");
  const accessType = cap.access_type ?? (cap.mount ? "mount" : cap.block ? "block" : undefined);
  if (accessType !== "mount" && accessType !== "block")
    throw invalidArgument(`${field}.access_type`, "must be mount or block");
  const accessMode = cap.access_mode?.mode;
  if (!isAccessMode(accessMode))
    throw invalidArgument(`${field}.access_mode.mode`, `is missing or unknown: ${JSON.stringify(accessMode)}`);
  const multiNode = multiNodeWriteProblem(accessType, accessMode);
  if (multiNode) throw invalidArgument(`${field}.access_mode.mode`, multiNode);
  let fsType: FsType = "ext4";
  let mountFlags: string[] = [];
  if (accessType === "mount") {
    const raw = cap.mount?.fs_type ?? "";
    if (raw !== "") {
      if (!(FS_TYPES as readonly string[]).includes(raw))
        throw invalidArgument(
          `${field}.mount.fs_type`,
          `must be one of ${FS_TYPES.join(", ")}, got ${JSON.stringify(raw)}`,
        );
      fsType = raw as FsType;
    }
    const flags = cap.mount?.mount_flags ?? [];
    if (!Array.isArray(flags)) throw invalidArgument(`${field}.mount.mount_flags`, "must be a list");
    mountFlags = flags.flatMap((f: unknown) => String(f).split(",")).filter(Boolean);
    const bad = mountFlags.find((f) => !SAFE_FLAG.test(f));
    if (bad !== undefined)
      throw invalidArgument(`${field}.mount.mount_flags`, `contains an unsafe flag ${JSON.stringify(bad)}`);
  }
  return { accessType, accessMode, fsType, mountFlags };
}
