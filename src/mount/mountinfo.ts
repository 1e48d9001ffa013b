import { DeadlineError } from "../runtime/errors.ts";
import type { CommandContext } from "../runtime/exec.ts";
import { describeFailure } from "../runtime/exec.ts";

/** One line of /proc/<pid>/mountinfo (see proc(5)). Path-like fields are already unescaped. */
export interface MountEntry {
  id: number;
  parentId: number;
  major: number;
  minor: number;
  /** "major:minor", handy as a map key. */
  dev: string;
  /** Root of the mount inside its filesystem (differs from "/" for bind mounts of a subdirectory). */
  root: string;
  mountPoint: string;
  /** Per-mount options (ro, nosuid, …). */
  options: string;
  /** Tagged fields such as "shared:12" or "master:3"; empty when there are none. */
  optionalFields: string[];
  fsType: string;
  source: string;
  /** Per-superblock options. */
  superOptions: string;
}

const BACKSLASH = 92; // '\\'

/**
 * The kernel escapes space, tab, newline and backslash as a backslash and three octal digits.
 * Checking for a backslash first keeps the common case allocation-free.
 */
export function unescapeMountField(s: string): string {
  if (s.indexOf("\\") === -1) return s;
  let out = "";
  let last = 0;
  for (let i = 0; i + 3 < s.length; i++) {
    if (s.charCodeAt(i) !== BACKSLASH) continue;
    const a = s.charCodeAt(i + 1) - 48,
      b = s.charCodeAt(i + 2) - 48,
      c = s.charCodeAt(i + 3) - 48;
    if (a >= 0 && a <= 3 && b >= 0 && b <= 7 && c >= 0 && c <= 7) {
      out += s.slice(last, i) + String.fromCharCode(a * 64 + b * 8 + c);
      i += 3;
      last = i + 1;
    }
  }
  return out + s.slice(last);
}

/** Position of the next space at or after `from`, or `end` when there is none before it. */
function nextSpace(text: string, from: number, end: number): number {
  const i = text.indexOf(" ", from);
  return i === -1 || i > end ? end : i;
}

/**
 * What went wrong with the mount table, and nothing about the request that needed it: a line the
 * parser does not understand, a table past the size bound (never decided on in part), or a read
 * that failed or was cancelled. A deadline is a DeadlineError. The caller picks the answer.
 */
export class MountTableError extends Error {
  override readonly name = "MountTableError";
  constructor(
    readonly reason: "malformed" | "too-large" | "unreadable",
    message: string,
  ) {
    super(message);
  }
}

function malformed(lineNo: number, why: string): MountTableError {
  return new MountTableError("malformed", `mountinfo line ${lineNo}: ${why}`);
}

/**
 * Parses the whole text in one pass with indexOf (no per-line regex or split): a node in a mount
 * storm can have 100k lines and this runs on every probe round.
 */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  const len = text.length;
  let pos = 0;
  let lineNo = 0;
  while (pos < len) {
    let eol = text.indexOf("\n", pos);
    if (eol === -1) eol = len;
    lineNo++;
    if (eol === pos) {
      pos = eol + 1;
      continue;
    }

    let s = pos;
    let e = nextSpace(text, s, eol);
    const id = Number(text.slice(s, e));
    s = e + 1;
    e = nextSpace(text, s, eol);
    const parentId = Number(text.slice(s, e));
    s = e + 1;
    e = nextSpace(text, s, eol);
    const dev = text.slice(s, e);
    const colon = dev.indexOf(":");
    s = e + 1;
    e = nextSpace(text, s, eol);
    const root = text.slice(s, e);
    s = e + 1;
    e = nextSpace(text, s, eol);
    const mountPoint = text.slice(s, e);
    s = e + 1;
    e = nextSpace(text, s, eol);
    const options = text.slice(s, e);
    if (e >= eol || colon <= 0 || Number.isNaN(id) || Number.isNaN(parentId)) {
      throw malformed(lineNo, "fewer than 6 fields before the separator");
    }

    const optionalFields: string[] = [];
    for (;;) {
      s = e + 1;
      if (s >= eol) throw malformed(lineNo, "missing ' - ' separator");
      e = nextSpace(text, s, eol);
      if (e === s + 1 && text.charCodeAt(s) === 45 /* '-' */) break;
      optionalFields.push(text.slice(s, e));
    }
    s = e + 1;
    e = nextSpace(text, s, eol);
    const fsType = text.slice(s, e);
    s = e + 1;
    e = nextSpace(text, s, eol);
    const source = text.slice(s, e);
    // Super options are the rest of the line; anything after a further space would be a newer kernel's addition.
    s = e + 1;
    e = nextSpace(text, s, eol);
    const superOptions = s <= eol ? text.slice(s, e) : "";
    if (s > eol + 1 || fsType === "") throw malformed(lineNo, "missing fields after the separator");

    out.push({
      id,
      parentId,
      major: Number(dev.slice(0, colon)),
      minor: Number(dev.slice(colon + 1)),
      dev,
      root: unescapeMountField(root),
      mountPoint: unescapeMountField(mountPoint),
      options,
      optionalFields,
      fsType,
      source: unescapeMountField(source),
      superOptions,
    });
    pos = eol + 1;
  }
  return out;
}

export interface ReadMountinfoOptions extends Omit<CommandContext, "timeoutMs"> {
  procRoot?: string;
  pid?: number | "self";
  /** Default 10 s. */
  timeoutMs?: number;
}

/** 100k mounts are ~15 MB of mountinfo; leave generous room but keep a bound. */
export const MAX_MOUNTINFO_BYTES = 512 * 1024 * 1024;

/** The mountinfo file of a process ("self": this one, by pid, so that a child reading it sees our view). */
export function mountinfoPathOf(opts: { procRoot?: string; pid?: number | "self" }): string {
  const pid = opts.pid === undefined || opts.pid === "self" ? process.pid : opts.pid;
  return `${opts.procRoot ?? "/proc"}/${pid}/mountinfo`;
}

/** A mountinfo larger than the bound was cut: never decide on part of the table. */
export const mountinfoTooLarge = (path: string) =>
  new MountTableError("too-large", `${path} is larger than ${MAX_MOUNTINFO_BYTES} bytes`);

/**
 * Reads mountinfo in a child `cat` with a deadline. The kernel generates mountinfo under the
 * namespace lock; when it is in trouble the read blocks, and a blocked read in our own process
 * would pin one of the few fs threads for good. A child can be abandoned instead.
 * "self" means this process's view, so the child reads its parent's file by pid.
 */
export async function readMountinfo(opts: ReadMountinfoOptions): Promise<MountEntry[]> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const path = mountinfoPathOf(opts);
  const r = await opts.runner("cat", ["--", path], {
    timeoutMs,
    maxOutputBytes: MAX_MOUNTINFO_BYTES,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (r.timedOut) throw new DeadlineError(`reading ${path}`, timeoutMs);
  if (r.exitCode !== 0) {
    throw new MountTableError(
      "unreadable",
      `reading ${path} ${r.aborted ? "was cancelled" : "failed"}: ${describeFailure(r)}`,
    );
  }
  if (r.truncated) throw mountinfoTooLarge(path);
  return parseMountinfo(r.stdout);
}
