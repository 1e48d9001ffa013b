import { HOST_NQN_FILE_OPTION } from "../config/options.ts";
import { NQN_MAX_BYTES, nqnProblem } from "../config/nqn.ts";
import { describeFailure, ok, type Runner } from "../runtime/exec.ts";
import type { Logger } from "../runtime/log.ts";

/**
 * This host's NQN, which the target matches against an export's allowed hosts (it is also the second
 * half of the node id). Read by a `cat` child with a deadline, not by our own process: on a diskless
 * node /etc lies on the NVMe/TCP root volume, and a read of a stalled volume from our process would
 * pin one of the runtime's few file-system threads for good (a deadline only abandons the promise);
 * a child is killed at its deadline, and counted if it cannot die.
 */
export type HostNqnRead =
  | { state: "found"; nqn: string }
  /** The file is not there, or holds only whitespace: the node has no host NQN (allowed). */
  | { state: "missing" | "empty"; message: string }
  /** It could not be read (permissions, the deadline): not known, said why. */
  | { state: "unreadable"; message: string }
  /** It holds something that is not an NQN: every connect would present it, so it is refused. */
  | { state: "invalid"; message: string };

export const HOST_NQN_READ_TIMEOUT_MS = 5_000;
const OPTION = `--${HOST_NQN_FILE_OPTION.name}`;
/** A file of garbage must not flood the message. */
const SHOWN_CHARS = 100;

export async function readHostNqn(
  runner: Runner,
  file: string,
  opts: { timeoutMs?: number; signal?: AbortSignal; log?: Logger } = {},
): Promise<HostNqnRead> {
  const r = await runner("cat", ["--", file], {
    timeoutMs: opts.timeoutMs ?? HOST_NQN_READ_TIMEOUT_MS,
    maxOutputBytes: 4096,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  });
  if (!ok(r)) {
    if (/No such file/i.test(r.stderr)) return { state: "missing", message: `${OPTION} ${file} does not exist` };
    return { state: "unreadable", message: `${OPTION} ${file} could not be read: ${describeFailure(r)}` };
  }
  if (r.truncated)
    return { state: "invalid", message: `${OPTION} ${file} is longer than an NQN can be (${NQN_MAX_BYTES} bytes)` };
  const nqn = r.stdout.trim();
  if (!nqn) return { state: "empty", message: `${OPTION} ${file} is empty` };
  const problem = nqnProblem(nqn);
  if (problem) {
    const shown = nqn.length > SHOWN_CHARS ? `${nqn.slice(0, SHOWN_CHARS)}…` : nqn;
    return { state: "invalid", message: `${OPTION} ${file} holds ${JSON.stringify(shown)}, not an NQN: it ${problem}` };
  }
  return { state: "found", nqn };
}
