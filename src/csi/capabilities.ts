import { SUPPORTED_FS } from "../fs/mkfs.ts";

/**
 * What a CSI volume capability may ask of this driver, stated once for both services: the access
 * modes of the CSI spec, the filesystems this driver can make (fs/mkfs.ts), and the one rule that
 * ties them together.
 */
export const ACCESS_MODES = [
  "SINGLE_NODE_WRITER",
  "SINGLE_NODE_READER_ONLY",
  "MULTI_NODE_READER_ONLY",
  "MULTI_NODE_SINGLE_WRITER",
  "MULTI_NODE_MULTI_WRITER",
  "SINGLE_NODE_SINGLE_WRITER",
  "SINGLE_NODE_MULTI_WRITER",
] as const;
export type AccessMode = (typeof ACCESS_MODES)[number];

export const FS_TYPES = SUPPORTED_FS;
export type { FsType } from "../fs/mkfs.ts";

/** Modes in which one node at a time writes: a second publication of such a volume is refused. */
export const SINGLE_WRITER_MODES: ReadonlySet<string> = new Set(["SINGLE_NODE_WRITER", "SINGLE_NODE_SINGLE_WRITER"]);

/** Two hosts writing one ext4/xfs corrupts it: only block volumes (live migration) may be multi-node writable. */
export function multiNodeWriteProblem(accessType: "mount" | "block", mode: string): string | null {
  if (accessType === "mount" && (mode === "MULTI_NODE_MULTI_WRITER" || mode === "MULTI_NODE_SINGLE_WRITER")) {
    return `${mode} is only supported for block volumes (a filesystem cannot be written by several nodes)`;
  }
  return null;
}

export const isAccessMode = (mode: unknown): mode is AccessMode =>
  typeof mode === "string" && (ACCESS_MODES as readonly string[]).includes(mode);
