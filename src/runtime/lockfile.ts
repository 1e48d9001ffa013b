import { closeSync, openSync, readFileSync, unlinkSync, writeSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Lock files tell other rds-csi processes on this host who is running (gc refuses to collect under
 * a live csi-node; two gc runs must not overlap). A lock whose process is gone is stale and ignored.
 * The process start time (from /proc) guards against a recycled pid looking alive.
 */
export interface LockInfo {
  pid: number;
  startedAt: string;
  command: string;
  procStart?: string;
}

export interface LockState extends LockInfo {
  alive: boolean;
}

function procStartOf(pid: number, procRoot = "/proc"): string | undefined {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, "utf8");
    // comm may contain spaces and parens: fields start after the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function readLock(path: string): LockState | null {
  let info: LockInfo;
  try {
    info = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    // Unreadable or half-written: treat as held by nobody we can name, but not as absent.
    return { pid: 0, startedAt: "", command: "unknown (unreadable lock file)", alive: false };
  }
  const alive = info.pid > 0 && pidAlive(info.pid) && (!info.procStart || procStartOf(info.pid) === info.procStart);
  return { ...info, alive };
}

/**
 * The lock is another live process's (`holder`), or another process was taking it at the same moment
 * (no holder to name). What that means is the caller's: gc refuses to run, csi-node refuses to start.
 */
export class LockHeldError extends Error {
  override readonly name = "LockHeldError";
  constructor(
    readonly path: string,
    readonly holder?: LockState,
  ) {
    super(
      holder
        ? `lock ${path} is held by pid ${holder.pid} (${holder.command}, since ${holder.startedAt})`
        : `could not take lock ${path}: another process is taking it at the same time`,
    );
  }
}

export const isLockHeld = (e: unknown): e is LockHeldError => e instanceof LockHeldError;

export interface HeldLock {
  path: string;
  /** Set when a stale lock was replaced; callers report it. */
  replacedStale?: LockState;
  release(): void;
}

export function acquireLock(path: string, opts: { command: string }): HeldLock {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const mine: LockInfo = {
    pid: process.pid,
    startedAt: new Date().toISOString(),
    command: opts.command,
    procStart: procStartOf(process.pid),
  };
  let replacedStale: LockState | undefined;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o644);
      writeSync(fd, JSON.stringify(mine) + "\n");
      closeSync(fd);
      return {
        path,
        replacedStale,
        release() {
          const cur = readLock(path);
          if (cur && cur.pid === mine.pid) {
            try {
              unlinkSync(path);
            } catch {
              /* already gone */
            }
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const holder = readLock(path);
      if (holder?.alive) throw new LockHeldError(path, holder);
      replacedStale = holder ?? undefined;
      try {
        unlinkSync(path);
      } catch {
        /* raced with another remover */
      }
    }
  }
  throw new LockHeldError(path);
}
