import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { killGroup, type Runner } from "../runtime/exec.ts";
import type { Logger } from "../runtime/log.ts";

export interface FsStats {
  bytesTotal: number;
  bytesAvailable: number;
  bytesUsed: number;
  inodesTotal: number;
  inodesFree: number;
  inodesUsed: number;
}

export type ProbeResult =
  | { state: "ok"; stats?: FsStats }
  /** `sinceMs`: epoch ms at which the first unanswered probe of this path started. */
  | { state: "dead"; reason: string; sinceMs: number }
  /** `missing`: the path does not exist (ENOENT), as opposed to any other failure. */
  | { state: "error"; reason: string; missing: boolean };

export interface ProbeRegistryOptions {
  /**
   * Accepted for the agreed call shape but not used: a probe must know when its child has been
   * reaped (that is what "still stuck" means), which a Runner result does not tell.
   */
  runner?: Runner;
  /** How long a path may take to answer before it is reported dead. */
  timeoutMs?: number;
  /** Batch children running at once (each probes many paths in sequence). */
  concurrency?: number;
  /** A path that has not answered after this long is suspected; the rest of its batch moves on without it. */
  stallMs?: number;
  /**
   * How long a probe that missed its deadline is kept as the path's sentinel before its process group
   * is killed. While it lives, the path is answered "dead" without a new child; when it answers, the
   * mount is known to be back. Killing it at the first deadline would only cause a fresh child per round.
   */
  abandonAfterMs?: number;
  /** Paths per child; batching keeps 10k mounts from costing 10k process starts. */
  maxBatch?: number;
  log?: Logger;
}

export interface ProbeRegistry {
  probe(path: string, opts?: { timeoutMs?: number }): Promise<ProbeResult>;
  /** Paths with a probe child that has not been reaped (in flight or stuck). */
  outstanding(): string[];
  /** Live probe children right now, and how many were ever started (for tests and benchmarks). */
  children(): { live: number; started: number; peak: number };
  /** Kills every probe child (process groups); pending probes answer "error". */
  close(): void;
}

interface Pending {
  path: string;
  timeoutMs: number;
  resolve: (r: ProbeResult) => void;
}

// Everything after "OK" is numbers, so a line can never be mistaken for an error message.
const FORMAT = "OK %b %a %f %S %c %d";
const MAX_ARGS_BYTES = 64 * 1024;

function parseOkLine(line: string): FsStats | undefined {
  const n = line.split(" ").slice(1).map(Number);
  if (n.length !== 6 || n.some((x) => !Number.isFinite(x))) return undefined;
  const [blocks, avail, free, bsize, files, ffree] = n as [number, number, number, number, number, number];
  return {
    bytesTotal: blocks * bsize,
    bytesAvailable: avail * bsize,
    bytesUsed: (blocks - free) * bsize,
    inodesTotal: files,
    inodesFree: ffree,
    inodesUsed: files - ffree,
  };
}

function lineToResult(line: string): ProbeResult {
  if (line.startsWith("OK ")) {
    const stats = parseOkLine(line);
    return stats ? { state: "ok", stats } : { state: "ok" };
  }
  return { state: "error", reason: line.trim(), missing: line.includes("No such file or directory") };
}

/** Looked up in our own PATH, which lies on system filesystems, never on a probed mount. */
function onPath(name: string): boolean {
  return (process.env.PATH ?? "/usr/bin:/bin").split(":").some((d) => d && existsSync(`${d}/${name}`));
}

/** stdbuf makes stat flush each line, which is how a batch child reports progress path by path. */
let stdbufPrefix: string | undefined;
function probeCommand(paths: readonly string[]): [string, string[]] {
  stdbufPrefix ??= onPath("stdbuf") ? "stdbuf -oL " : "";
  const lineBuffered = stdbufPrefix;
  // 2>&1 keeps answers and errors in one ordered stream: exactly one line per path.
  const script = `exec 2>&1; exec ${lineBuffered}stat -f -c '${FORMAT}' -- "$@"`;
  return ["sh", ["-c", script, "probe", ...paths]];
}

/**
 * Probes mount points from child processes only (incident 9: a statfs on a dead mount from our own
 * process would pin a thread for good). Paths are probed in batches by one `stat -f` per batch; a
 * path that stalls is split off so the rest of its batch goes on, and at its deadline it is reported
 * dead. At most one child per path is ever outstanding, across calls and rounds.
 */
export function createProbeRegistry(opts: ProbeRegistryOptions = {}): ProbeRegistry {
  const defaultTimeout = opts.timeoutMs ?? 5000;
  const concurrency = Math.max(1, opts.concurrency ?? 64);
  const stallMs = opts.stallMs ?? 250;
  const maxBatch = Math.max(1, opts.maxBatch ?? 128);
  const abandonAfter = (timeoutMs: number) => opts.abandonAfterMs ?? Math.max(60_000, 10 * timeoutMs);
  // Suspects still before their deadline hold extra children; bound them so a slow host cannot fan out.
  const maxChildren = concurrency * 4;

  const inflight = new Map<string, Promise<ProbeResult>>();
  const stuck = new Map<string, { sinceMs: number; pid: number | undefined }>();
  const queue: Pending[] = [];
  const live = new Set<ChildProcess>();
  let running = 0; // batch children not yet split down to a single suspect
  let suspects = 0; // split children whose suspect has not reached its deadline
  let started = 0;
  let peak = 0;
  let closed = false;
  let pumpScheduled = false;

  function schedulePump() {
    if (pumpScheduled) return;
    pumpScheduled = true;
    // Calls made in the same tick (doctor probing every mount) land in the queue before batching.
    queueMicrotask(() => {
      pumpScheduled = false;
      pump();
    });
  }

  function pump() {
    while (!closed && queue.length > 0 && running < concurrency && running + suspects < maxChildren) {
      const free = concurrency - running;
      const size = Math.min(maxBatch, Math.max(1, Math.ceil(queue.length / free)));
      const batch: Pending[] = [];
      let bytes = 0;
      while (batch.length < size && queue.length > 0) {
        const next = queue[0]!;
        if (batch.length > 0 && bytes + next.path.length + 1 > MAX_ARGS_BYTES) break;
        bytes += next.path.length + 1;
        batch.push(queue.shift()!);
      }
      startBatch(batch);
    }
  }

  function startBatch(items: Pending[]) {
    const [cmd, args] = probeCommand(items.map((i) => i.path));
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, {
        detached: true,
        stdio: ["ignore", "pipe", "ignore"],
        env: { ...process.env, LC_ALL: "C" },
      });
    } catch (e) {
      for (const it of items)
        settle(it, { state: "error", reason: `could not start probe: ${(e as Error).message}`, missing: false });
      return;
    }
    started++;
    live.add(child);
    peak = Math.max(peak, live.size);
    running++;

    let idx = 0;
    let end = items.length;
    let split = false;
    let sentinel = false; // the suspect missed its deadline; this child now only marks the path as stuck
    let itemStartedAt = Date.now();
    let buf = "";
    let stallTimer: ReturnType<typeof setTimeout> | undefined;
    let deadlineTimer: ReturnType<typeof setTimeout> | undefined;
    let abandonTimer: ReturnType<typeof setTimeout> | undefined;

    const leaveSlot = () => {
      if (!split) {
        running--;
        split = true;
      } else if (!sentinel) suspects--;
    };

    /** Hands the paths after the current one to other children. */
    const handOffRest = () => {
      if (end - idx > 1) {
        queue.unshift(...items.slice(idx + 1, end));
        end = idx + 1;
      }
      if (!split) {
        running--;
        split = true;
        suspects++;
      }
      schedulePump();
    };

    const armTimers = () => {
      clearTimeout(stallTimer);
      clearTimeout(deadlineTimer);
      if (idx >= end || sentinel) return;
      const it = items[idx]!;
      if (end - idx > 1) stallTimer = setTimeout(handOffRest, Math.min(stallMs, it.timeoutMs));
      deadlineTimer = setTimeout(() => {
        handOffRest();
        suspects--;
        sentinel = true;
        stuck.set(it.path, { sinceMs: itemStartedAt, pid: child.pid });
        settle(it, { state: "dead", reason: `no answer within ${it.timeoutMs} ms`, sinceMs: itemStartedAt });
        opts.log?.warn({ path: it.path, timeout_ms: it.timeoutMs, pid: child.pid }, "mount probe missed its deadline");
        abandonTimer = setTimeout(() => killGroup(child), abandonAfter(it.timeoutMs));
        abandonTimer.unref?.();
        schedulePump();
      }, it.timeoutMs);
    };

    const onLine = (line: string) => {
      if (idx >= end) return;
      const it = items[idx]!;
      const r = lineToResult(line);
      if (sentinel) {
        opts.log?.info({ path: it.path, state: r.state }, "stuck mount probe answered at last");
        stuck.delete(it.path);
      } else {
        settle(it, r);
      }
      idx++;
      itemStartedAt = Date.now();
      armTimers();
      // A split child must not go on to paths that now belong to another child.
      if (idx >= end && end < items.length) killGroup(child);
    };

    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf("\n")) !== -1) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    child.on("error", (e) => finish(`could not start probe: ${e.message}`));
    child.on("close", (code, signal) => finish(`probe ended (${signal ?? `exit ${code}`}) without an answer`));

    let finished = false;
    function finish(why: string) {
      if (finished) return;
      finished = true;
      clearTimeout(stallTimer);
      clearTimeout(deadlineTimer);
      clearTimeout(abandonTimer);
      live.delete(child);
      if (buf) {
        onLine(buf);
        buf = "";
      }
      if (sentinel) {
        const it = items[idx];
        if (it && stuck.get(it.path)?.pid === child.pid) stuck.delete(it.path);
      } else {
        leaveSlot();
        for (let i = idx; i < end; i++) settle(items[i]!, { state: "error", reason: why, missing: false });
      }
      schedulePump();
    }

    armTimers();
  }

  function settle(it: Pending, r: ProbeResult) {
    inflight.delete(it.path);
    it.resolve(r);
  }

  return {
    probe(path, o = {}) {
      if (closed) return Promise.resolve({ state: "error", reason: "probe registry closed", missing: false });
      const s = stuck.get(path);
      if (s) {
        return Promise.resolve({
          state: "dead",
          reason: `earlier probe (pid ${s.pid}) still stuck after ${Date.now() - s.sinceMs} ms`,
          sinceMs: s.sinceMs,
        });
      }
      const existing = inflight.get(path);
      if (existing) return existing;
      const p = new Promise<ProbeResult>((resolve) => {
        queue.push({ path, timeoutMs: o.timeoutMs ?? defaultTimeout, resolve });
      });
      inflight.set(path, p);
      schedulePump();
      return p;
    },
    outstanding: () => [...new Set([...inflight.keys(), ...stuck.keys()])],
    children: () => ({ live: live.size, started, peak }),
    close() {
      closed = true;
      for (const it of queue.splice(0)) settle(it, { state: "error", reason: "probe registry closed", missing: false });
      for (const c of live) killGroup(c);
    },
  };
}
