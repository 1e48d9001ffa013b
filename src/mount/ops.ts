import { dirname } from "node:path";
import { ok, type CommandContext, type ExecResult } from "../runtime/exec.ts";
import { CommandFailedError } from "../runtime/command-failed.ts";
import { crashPoint } from "../runtime/crash-points.ts";

/**
 * mount/umount/mknod and path operations, each a child process with a deadline. Paths under the
 * kubelet tree may sit on a dead mount, and on a diskless node the tree itself is network
 * storage: the server process never stats or touches them itself.
 */

const run = (o: CommandContext, cmd: string, args: string[], info = true): Promise<ExecResult> =>
  o.runner(cmd, args, { timeoutMs: o.timeoutMs, signal: o.signal, log: o.log, logLevel: info ? "info" : "debug" });

export { CommandFailedError };

/**
 * A failed command is a CommandFailedError with its result: the service decides what it means for
 * the RPC (a mount option the kernel refuses is the request's fault, a hung mount is the node's).
 */
function must(r: ExecResult, what: string): void {
  if (ok(r)) return;
  if (r.timedOut)
    throw new CommandFailedError(
      r,
      what,
      `${what} did not finish within ${r.durationMs} ms; the node's mounts may be hung`,
    );
  throw new CommandFailedError(r, what);
}

/**
 * mount(8)'s words for an option the kernel refused: util-linux ≥ 2.39 names it ("Unknown parameter"),
 * older ones print the catch-all "wrong fs type, bad option, bad superblock"; the filesystem has
 * passed its read-only check just before, so with options given the option is the likely cause.
 */
export function refusedMountOptions(e: unknown, options: readonly string[]): boolean {
  return (
    options.length > 0 &&
    e instanceof CommandFailedError &&
    e.result.command === "mount" &&
    /Unknown parameter|unknown mount option|unrecognized mount option|bad option/i.test(e.result.stderr)
  );
}

export type PathKind =
  | { kind: "missing" }
  | { kind: "directory" }
  | { kind: "file"; size: number }
  | { kind: "block"; dev: string }
  | { kind: "other"; type: string };

/** What is at `path`, answered by `stat` in a child. */
export async function pathKind(path: string, o: CommandContext): Promise<PathKind> {
  // %t/%T are the device numbers in hex; %s the size.
  const r = await run(o, "stat", ["-c", "%F|%t|%T|%s", "--", path], false);
  if (r.exitCode !== 0) {
    if (/No such file or directory/.test(r.stderr)) return { kind: "missing" };
    must(r, `stat ${path}`);
  }
  const [type = "", maj = "0", min = "0", size = "0"] = r.stdout.trim().split("|");
  if (type === "directory") return { kind: "directory" };
  if (type.startsWith("regular")) return { kind: "file", size: Number(size) };
  if (type === "block special file") return { kind: "block", dev: `${parseInt(maj, 16)}:${parseInt(min, 16)}` };
  return { kind: "other", type };
}

export async function makeDirectory(path: string, o: CommandContext): Promise<void> {
  must(await run(o, "mkdir", ["-p", "--", path], false), `mkdir ${path}`);
}

/**
 * Makes the directory (and its parents) unless something is there, in one child: `mkdir -pv` names
 * what it created, so no stat is needed to learn that a new, empty, real directory is there now.
 * "existed" is a directory or a symlink to one (mkdir -p follows it); "in-the-way" anything else.
 */
export async function makeDirectoryIfMissing(
  path: string,
  o: CommandContext,
): Promise<"created" | "existed" | "in-the-way"> {
  const r = await run(o, "mkdir", ["-pv", "--", path], false);
  if (!ok(r) && /File exists|Not a directory/.test(r.stderr)) return "in-the-way";
  must(r, `mkdir ${path}`);
  return r.stdout.trim() ? "created" : "existed";
}

/**
 * A symlink at the final component is in the way, never followed: `mkdir -p` would accept a symlink
 * to a directory, and a mount there would follow it out of the kubelet dir. The child looks first,
 * with shell builtins (lstat, then stat): a directory that is already there (kubelet makes the staging
 * dir before NodeStageVolume) costs one sh and no exec; only a missing path execs mkdir.
 */
const MKDIR_NO_FOLLOW = 'if [ -L "$1" ]; then echo symlink; elif [ ! -d "$1" ]; then exec mkdir -pv -- "$1"; fi';

/**
 * makeDirectoryIfMissing where "existed" is a real directory only: a symlink, dangling or not, is
 * "in-the-way" like a file. Only for a path the mount table says is no mount point: stat or mkdir of
 * a dead mount would hang.
 */
export async function makeDirectoryNoFollow(
  path: string,
  o: CommandContext,
): Promise<"created" | "existed" | "in-the-way"> {
  const r = await run(o, "sh", ["-c", MKDIR_NO_FOLLOW, "sh", path], false);
  if (!ok(r) && /File exists|Not a directory/.test(r.stderr)) return "in-the-way";
  must(r, `mkdir ${path}`);
  const said = r.stdout.trim();
  if (said === "symlink") return "in-the-way";
  return said ? "created" : "existed";
}

/** A directory that was to be removed still holds something: it is never emptied for the caller. */
export class DirectoryNotEmptyError extends Error {
  override readonly name = "DirectoryNotEmptyError";
  constructor(readonly path: string) {
    super(`${path} is not empty; refusing to remove it`);
  }
}

/**
 * Removes an empty directory or a non-directory; a missing path is fine. rmdir first (what the
 * unpublish and unstage paths remove is a directory), `rm -f` only when rmdir says it is not one:
 * one child in the common case instead of a stat before.
 */
export async function removePath(path: string, o: CommandContext): Promise<void> {
  let r = await run(o, "rmdir", ["--", path]);
  if (ok(r) || /No such file or directory/.test(r.stderr)) return;
  if (/Not a directory/.test(r.stderr)) r = await run(o, "rm", ["-f", "--", path]);
  if (!ok(r) && /Directory not empty/.test(r.stderr)) throw new DirectoryNotEmptyError(path);
  must(r, `remove ${path}`);
}

/**
 * rmdir and nothing else: an empty directory goes, a missing path is fine, a non-empty directory is
 * DirectoryNotEmptyError, and anything that is not a directory is reported, never removed.
 */
export async function removeEmptyDirectory(
  path: string,
  o: CommandContext,
): Promise<"removed" | "missing" | "not-a-directory"> {
  const r = await run(o, "rmdir", ["--", path]);
  if (ok(r)) return "removed";
  if (/No such file or directory/.test(r.stderr)) return "missing";
  if (/Not a directory/.test(r.stderr)) return "not-a-directory";
  if (/Directory not empty/.test(r.stderr)) throw new DirectoryNotEmptyError(path);
  must(r, `rmdir ${path}`);
  return "removed";
}

export async function mountDevice(
  device: string,
  target: string,
  fsType: string,
  options: readonly string[],
  o: CommandContext,
): Promise<void> {
  const args = ["-t", fsType, ...(options.length ? ["-o", options.join(",")] : []), "--", device, target];
  must(await run(o, "mount", args), `mount ${device} on ${target}`);
}

/** Bind mount of a directory (a staging path), then a remount for read-only or flags. */
export async function bindMount(
  source: string,
  target: string,
  readonly: boolean,
  flags: readonly string[],
  o: CommandContext,
): Promise<void> {
  must(await run(o, "mount", ["--bind", "--", source, target]), `bind mount ${source} on ${target}`);
  crashPoint("mount.bind.before-remount");
  const extra = [...(readonly ? ["ro"] : []), ...flags];
  if (extra.length) await remountBind(target, extra, o);
}

export async function remountBind(target: string, flags: readonly string[], o: CommandContext): Promise<void> {
  must(
    await run(o, "mount", ["-o", ["remount", "bind", ...flags].join(","), "--", target]),
    `remount ${target} ${flags.join(",")}`,
  );
}

export async function unmount(target: string, o: CommandContext): Promise<void> {
  must(await run(o, "umount", ["--", target]), `umount ${target}`);
}

/**
 * A block volume is published as a device node carrying the device's major:minor. Never a bind
 * mount of a /dev node: that drags devtmpfs along and multiplied into incident 2's storm.
 */
export async function makeBlockNode(target: string, dev: string, readonly: boolean, o: CommandContext): Promise<void> {
  const [major, minor] = dev.split(":");
  await makeDirectory(dirname(target), o);
  must(
    await run(o, "mknod", ["-m", readonly ? "0440" : "0660", "--", target, "b", major ?? "", minor ?? ""]),
    `mknod ${target} b ${major} ${minor}`,
  );
}
