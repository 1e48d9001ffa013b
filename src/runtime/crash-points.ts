import { appendFileSync } from "node:fs";

/**
 * Named steps between the writes of a multi-step change, where a test kills the process on purpose
 * (SIGKILL, as a container kill or power loss would) to prove that a retry converges from there.
 *
 * Off unless the environment names them, and then only two reads of an env var per step:
 * - RDS_CSI_CRASH_AT=<name>[:<n>] kills the process at the n-th (default 1st) time it reaches <name>;
 * - RDS_CSI_CRASH_POINTS_LOG=<file> appends every step reached, so a test can list them all first.
 */
const counts = new Map<string, number>();

export function crashPoint(name: string): void {
  const log = process.env.RDS_CSI_CRASH_POINTS_LOG;
  if (log) appendFileSync(log, `${name}\n`);
  const at = process.env.RDS_CSI_CRASH_AT;
  if (!at) return;
  const [wanted, nth = "1"] = at.split(":");
  if (wanted !== name) return;
  const n = (counts.get(name) ?? 0) + 1;
  counts.set(name, n);
  if (n === Number(nth)) process.kill(process.pid, "SIGKILL");
}
