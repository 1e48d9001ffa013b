import { chmodSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { DomainError } from "./errors.ts";

/**
 * Unix sockets that never exist with a wider mode than asked for. bind() creates the socket with
 * 0777 & ~umask, and until chmod runs any local user can connect (measured under umask 000: a uid
 * 65534 client got in 3 times out of 10). So the socket is bound inside a fresh 0700 directory,
 * chmod'ed there, and only then renamed into place.
 */
export interface PrivateSocketOptions {
  /** Accept a socket directory that users other than root may write to. */
  allowSharedDir: boolean;
}

/** Refuses a directory another user could use to swap or pre-create our socket. */
export function socketDirProblem(dir: string, allowShared: boolean): string | null {
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    return `cannot be inspected: ${(e as Error).message}`;
  }
  if (!st.isDirectory()) return "is not a directory";
  if (allowShared) return null;
  const mode = st.mode & 0o7777;
  if (mode & 0o002)
    return `is writable by every user (mode ${mode.toString(8).padStart(4, "0")}); another user could replace the socket`;
  if (mode & 0o020 && st.gid !== 0 && st.gid !== process.getgid?.()) {
    return `is writable by group ${st.gid} (mode ${mode.toString(8).padStart(4, "0")}); another user could replace the socket`;
  }
  return null;
}

/** Removes a stale socket of ours; any other file at the path is someone else's. */
function removeStaleSocket(path: string): void {
  try {
    if (!lstatSync(path).isSocket())
      throw new DomainError(
        "failed-precondition",
        `socket path ${path} exists and is not a socket; refusing to remove it`,
      );
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

/** Checks the directory, clears a stale socket, and makes the private directory the bind happens in. */
function prepare(finalPath: string, opts: PrivateSocketOptions): string {
  const dir = dirname(finalPath);
  // Explicit mode: under umask 000 a default mkdir would make the directory world-writable.
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  const problem = socketDirProblem(dir, opts.allowSharedDir);
  if (problem) throw new DomainError("failed-precondition", `socket directory ${dir} ${problem}`);
  removeStaleSocket(finalPath);
  // mkdtemp makes the directory 0700 whatever the umask; the name is short (sun_path holds 108 bytes).
  return mkdtempSync(join(dir, ".rc"));
}

function publish(privateDir: string, finalPath: string, mode: number): void {
  const tempPath = join(privateDir, "s");
  chmodSync(tempPath, mode);
  renameSync(tempPath, finalPath);
}

export async function bindPrivateSocket<T>(
  finalPath: string,
  mode: number,
  opts: PrivateSocketOptions,
  bind: (tempPath: string) => Promise<T>,
): Promise<T> {
  const privateDir = prepare(finalPath, opts);
  try {
    const result = await bind(join(privateDir, "s"));
    publish(privateDir, finalPath, mode);
    return result;
  } finally {
    rmSync(privateDir, { recursive: true, force: true });
  }
}

export function bindPrivateSocketSync<T>(
  finalPath: string,
  mode: number,
  opts: PrivateSocketOptions,
  bind: (tempPath: string) => T,
): T {
  const privateDir = prepare(finalPath, opts);
  try {
    const result = bind(join(privateDir, "s"));
    publish(privateDir, finalPath, mode);
    return result;
  } finally {
    rmSync(privateDir, { recursive: true, force: true });
  }
}
