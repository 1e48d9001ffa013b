import * as v from "valibot";
import { ACCESS_MODES, FS_TYPES, multiNodeWriteProblem, type AccessMode, type FsType } from "./capabilities.ts";

/**
 * Request fields both CSI services read, as valibot schemas. Messages are the part after the
 * field: csi/validate.ts prefixes the field path, so every refusal names the field.
 */

/**
 * A message of the request (the request itself, a capability, a range). A field it requires that is
 * absent is "is required" under the field's own name: valibot would say "Invalid key" otherwise.
 */
export const Message = <const E extends v.ObjectEntries>(entries: E) =>
  v.looseObject(entries, (issue) =>
    issue.received === "undefined" || issue.received === "null" ? "is required" : "must be a message",
  );

/** A required string: present, non-empty, no NUL (a NUL would cut the value short in any child's argv). */
export const RequiredString = v.pipe(
  v.string("is required"),
  v.minLength(1, "is required"),
  v.check((s) => !s.includes("\0"), "must not contain NUL"),
);

/** An id the CO passes back (volume_id, snapshot_id, …): a required string of bounded length. */
export const IdSchema = v.pipe(RequiredString, v.maxLength(256, "is too long"));

export const ACCESS_TYPES = ["mount", "block"] as const;
export type AccessType = (typeof ACCESS_TYPES)[number];

export const AccessModeSchema = Message({
  mode: v.picklist(ACCESS_MODES, (issue) => `is missing or unknown: ${issue.received}`),
});

/** The mount member of a capability as sent; which fs_type is acceptable is each service's rule. */
export const MountShape = Message({
  fs_type: v.optional(v.string("must be a string")),
  mount_flags: v.optional(v.array(v.string("must be a string"), "must be a list")),
});

/** A capability as the CO sends it: the shape only (the controller reports unsupported ones by its own rules). */
export const CapabilityShape = Message({
  access_type: v.optional(v.picklist(ACCESS_TYPES, "must be mount or block")),
  access_mode: AccessModeSchema,
  mount: v.nullish(MountShape),
  block: v.nullish(v.unknown()),
});

/** What a node acts on: the capability checked against this driver and reduced to what it means. */
export interface Capability {
  accessType: AccessType;
  accessMode: AccessMode;
  fsType: FsType;
  mountFlags: string[];
}

/** A mount flag is one option word; commas would smuggle more options past this check. */
const SAFE_FLAG = /^[A-Za-z0-9_][A-Za-z0-9_=.:-]*$/;

type CapabilityInput = v.InferOutput<typeof CapabilityShape>;
const accessTypeOf = (c: CapabilityInput): AccessType | undefined =>
  c.access_type ?? (c.mount ? "mount" : c.block ? "block" : undefined);
const flagsOf = (c: CapabilityInput) => (c.mount?.mount_flags ?? []).flatMap((f) => f.split(",")).filter(Boolean);
const fsTypeOf = (c: CapabilityInput) => c.mount?.fs_type ?? "";
const isFsType = (s: string): s is FsType => (FS_TYPES as readonly string[]).includes(s);

/**
 * A capability the node can serve, checked in the order the fields are named in the CSI message:
 * access type, access mode (and the multi-node-writer rule), fs_type, mount flags. The oneof's
 * name (`access_type`, as csi/proto.ts decodes it) may be absent when a member is set.
 */
export const NodeCapabilitySchema = v.pipe(
  CapabilityShape,
  v.forward(
    v.check((c) => accessTypeOf(c) !== undefined, "must be mount or block"),
    ["access_type"],
  ),
  v.forward(
    v.check(
      (c) => multiNodeWriteProblem(accessTypeOf(c)!, c.access_mode.mode) === null,
      (issue) => multiNodeWriteProblem(accessTypeOf(issue.input)!, issue.input.access_mode.mode) ?? "",
    ),
    ["access_mode", "mode"],
  ),
  v.forward(
    v.check(
      (c) => accessTypeOf(c) !== "mount" || fsTypeOf(c) === "" || isFsType(fsTypeOf(c)),
      (issue) => `must be one of ${FS_TYPES.join(", ")}, got ${JSON.stringify(fsTypeOf(issue.input))}`,
    ),
    ["mount", "fs_type"],
  ),
  v.forward(
    v.check(
      (c) => accessTypeOf(c) !== "mount" || flagsOf(c).every((f) => SAFE_FLAG.test(f)),
      (issue) => `contains an unsafe flag ${JSON.stringify(flagsOf(issue.input).find((f) => !SAFE_FLAG.test(f)))}`,
    ),
    ["mount", "mount_flags"],
  ),
  v.transform((c): Capability => {
    const accessType = accessTypeOf(c)!;
    const fs = fsTypeOf(c);
    return {
      accessType,
      accessMode: c.access_mode.mode,
      fsType: accessType === "mount" && isFsType(fs) ? fs : "ext4",
      mountFlags: accessType === "mount" ? flagsOf(c) : [],
    };
  }),
);

/** A map<string,string> field; absent (or null from the decoder) is empty. */
export const StringMap = v.pipe(
  v.nullish(v.record(v.string(), v.string("must be a string")), {}),
  v.transform((m): Record<string, string> => m ?? {}),
);
