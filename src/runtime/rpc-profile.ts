import { AsyncLocalStorage } from "node:async_hooks";
import type { Runner } from "./exec.ts";

/** What one RPC made the system do: every child process it started, mount-table reads among them. */
export interface RpcProfile {
  children: { command: string; ms: number }[];
  mountTableReads: number;
}

const scope = new AsyncLocalStorage<RpcProfile>();

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
    const r = await runner(command, args, opts);
    const p = scope.getStore();
    if (p) {
      p.children.push({ command, ms: r.durationMs });
      if (readsMountTable(command, args)) p.mountTableReads++;
    }
    return r;
  };
  // Keep the runner's own extras (stuck-child counters) on the wrapper.
  return Object.assign(counted, runner) as R;
}

/** Runs fn with a fresh profile and hands the profile to done, whether fn succeeded or not. */
export async function profiled<T>(fn: () => Promise<T>, done: (p: RpcProfile) => void): Promise<T> {
  const p: RpcProfile = { children: [], mountTableReads: 0 };
  try {
    return await scope.run(p, fn);
  } finally {
    done(p);
  }
}

/** The profile as log fields: counts, plus the commands in order (names only, never arguments). */
export function profileFields(p: RpcProfile) {
  return {
    children: p.children.length,
    mount_table_reads: p.mountTableReads,
    commands: p.children.map((c) => c.command).join(" "),
  };
}
