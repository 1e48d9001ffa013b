import { statSync } from "node:fs";
import { dirname } from "node:path";
import { socketDirProblem } from "./private-socket.ts";
import { stateDirProblem } from "./state-dir.ts";

/** The socket path of a `unix:` endpoint (unix:///abs or unix:/abs), else undefined. */
export const socketPathOf = (endpoint: string): string | undefined =>
  endpoint.startsWith("unix:") ? endpoint.replace(/^unix:(\/\/)?/, "") : undefined;

/**
 * Directories a daemon writes root-owned files and sockets into, checked before any lock, socket or
 * record exists: one line naming the option and the value when another user could tamper with them.
 * Light on purpose: gc borrows the controller's options and must not load gRPC through this.
 */
export function daemonDirsProblem(c: {
  endpoint?: unknown;
  stateDir?: unknown;
  allowSharedSocketDir?: unknown;
}): string | null {
  const socketPath = socketPathOf(String(c.endpoint ?? ""));
  if (socketPath && c.allowSharedSocketDir !== true) {
    const dir = dirname(socketPath);
    let exists = true;
    try {
      statSync(dir);
    } catch {
      exists = false;
    }
    const problem = exists ? socketDirProblem(dir, false) : null;
    if (problem) return `option --endpoint: socket directory ${dir} ${problem} (--allow-shared-socket-dir accepts it)`;
  }
  const stateDir = String(c.stateDir);
  const state = stateDirProblem(stateDir);
  if (state) return `option --state-dir: ${stateDir} ${state}`;
  return null;
}
