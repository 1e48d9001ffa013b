import { statSync } from "node:fs";
import { serveAdmin } from "../runtime/admin.ts";
import { serveMetrics, syncBreakerGauges } from "../runtime/metrics.ts";
import { dirname } from "node:path";
import { grpcAddress } from "../csi/proto.ts";
import { socketDirProblem } from "../csi/private-socket.ts";
import { stateDirProblem } from "../runtime/state-dir.ts";
import type { Config, ModeContext } from "./types.ts";

/**
 * Directories a daemon writes root-owned files and sockets into, checked before any lock, socket or
 * record exists: one line naming the option and the value when another user could tamper with them.
 */
export function daemonDirsProblem(c: Config): string | null {
  const { socketPath } = grpcAddress(c.endpoint as string);
  if (socketPath && c.allowSharedSocketDir !== true) {
    const dir = dirname(socketPath);
    let exists = true;
    try { statSync(dir); } catch { exists = false; }
    const problem = exists ? socketDirProblem(dir, false) : null;
    if (problem) return `option --endpoint: socket directory ${dir} ${problem} (--allow-shared-socket-dir accepts it)`;
  }
  const stateDir = c.stateDir as string;
  const state = stateDirProblem(stateDir);
  if (state) return `option --state-dir: ${stateDir} ${state}`;
  return null;
}

/**
 * Shared wiring of the long-running modes: admin socket, optional /metrics, signal handling.
 * Resolves with the exit code once a SIGTERM/SIGINT drain has finished.
 */
export function runDaemon(ctx: ModeContext, opts: { adminSocket?: string; backend?: () => unknown }): Promise<number> {
  if (opts.adminSocket) {
    const admin = serveAdmin({ socketPath: opts.adminSocket, breakers: ctx.breakers, shutdown: ctx.shutdown, log: ctx.log, mode: String(ctx.config["mode"] ?? ""), ...(opts.backend ? { backend: opts.backend } : {}) });
    ctx.shutdown.onClose(() => admin.stop());
  }
  const address = ctx.config.metricsAddress as string | undefined;
  if (address) {
    const m = serveMetrics(address, ctx.metrics, () => syncBreakerGauges(ctx.metrics, ctx.breakers));
    ctx.log.info({ address, port: m.port }, "metrics endpoint listening");
    ctx.shutdown.onClose(() => m.stop());
  }
  // Module start-up leaves garbage behind; a daemon that then idles for days should not carry it.
  setTimeout(() => Bun.gc(true), 1_000).unref();
  return new Promise<number>((resolve) => ctx.shutdown.install(resolve));
}
