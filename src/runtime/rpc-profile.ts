import { AsyncLocalStorage } from "node:async_hooks";
import type { Runner } from "./exec.ts";

/**
 * What one RPC made the system do: every child process it started, mount-table reads among them,
 * and where its wall time went: waiting on children, or the process's own work (parsing, records,
 * logging, locks, the event loop) — the part no faster command can cut.
 */
export interface RpcProfile {
  /** Each child as the RPC saw it: from the runner call to its result (spawn and reaping included). */
  children: { command: string; ms: number }[];
  mountTableReads: number;
  /** Wall time with at least one child outstanding (overlapping children count once). */
  childMs: number;
  /** Wall time of the whole RPC; set when it ends. */
  wallMs: number;
}

interface Scope {
  profile: RpcProfile;
  outstanding: number;
  busySince: number;
  /** The RPC has answered: a child it gave up on changes its profile no more. */
  ended: boolean;
}

const scope = new AsyncLocalStorage<Scope>();

/**
 * The mount table is read in a child (never in-process: see mount/mountinfo.ts): `cat …/mountinfo`,
 * or the node's path check that reads it in the same child (`sh -c … …/mountinfo`, node/context.ts).
 */
const readsMountTable = (_command: string, args: readonly string[]) => args.some((a) => a.endsWith("/mountinfo"));

/**
 * The same runner, counting each child into the profile of the RPC it runs for (concurrent RPCs
 * keep separate profiles). Outside profiled(), it only runs.
 */
export function profilingRunner<R extends Runner>(runner: R): R {
  const counted: Runner = async (command, args, opts) => {
    const s = scope.getStore();
    if (!s) return runner(command, args, opts);
    const started = performance.now();
    if (s.outstanding++ === 0) s.busySince = started;
    try {
      return await runner(command, args, opts);
    } finally {
      const now = performance.now();
      s.outstanding--;
      if (!s.ended) {
        if (s.outstanding === 0) s.profile.childMs += now - s.busySince;
        s.profile.children.push({ command, ms: now - started });
        if (readsMountTable(command, args)) s.profile.mountTableReads++;
      }
    }
  };
  // Keep the runner's own extras (stuck-child counters) on the wrapper.
  return Object.assign(counted, runner) as R;
}

/** Runs fn with a fresh profile and hands the profile to done, whether fn succeeded or not. */
export async function profiled<T>(fn: () => Promise<T>, done: (p: RpcProfile) => void): Promise<T> {
  const s: Scope = {
    profile: { children: [], mountTableReads: 0, childMs: 0, wallMs: 0 },
    outstanding: 0,
    busySince: 0,
    ended: false,
  };
  const started = performance.now();
  try {
    return await scope.run(s, fn);
  } finally {
    const now = performance.now();
    // A child still outstanding (the RPC gave up on it) counts up to now.
    if (s.outstanding > 0) s.profile.childMs += now - s.busySince;
    s.profile.wallMs = now - started;
    s.ended = true;
    done(s.profile);
  }
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** The profile as log fields: counts, times, plus the commands in order (names only, never arguments). */
export function profileFields(p: RpcProfile) {
  return {
    children: p.children.length,
    mount_table_reads: p.mountTableReads,
    commands: p.children.map((c) => c.command).join(" "),
    duration_ms: round2(p.wallMs),
    children_ms: round2(p.childMs),
    own_ms: round2(p.wallMs - p.childMs),
  };
}
