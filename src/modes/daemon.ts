import { serveAdmin } from "../runtime/admin.ts";
import type { ModeContext } from "./types.ts";

/**
 * Shared wiring of the long-running modes: admin socket, optional /metrics, signal handling.
 * Resolves with the exit code once a SIGTERM/SIGINT drain has finished.
 */
export async function runDaemon(
  ctx: ModeContext<{ metricsAddress?: string | undefined }>,
  opts: { adminSocket?: string; backend?: () => unknown },
): Promise<number> {
  if (opts.adminSocket) {
    const admin = serveAdmin({
      socketPath: opts.adminSocket,
      breakers: ctx.breakers,
      shutdown: ctx.shutdown,
      log: ctx.log,
      mode: ctx.mode,
      ...(opts.backend ? { backend: opts.backend } : {}),
    });
    ctx.shutdown.onClose(() => admin.stop());
  }
  const address = ctx.config.metricsAddress;
  if (address) {
    const { serveMetrics, syncBreakerGauges } = await import("../runtime/metrics.ts");
    const m = serveMetrics(address, ctx.metrics, () => syncBreakerGauges(ctx.metrics, ctx.breakers));
    ctx.log.info({ address, port: m.port }, "metrics endpoint listening");
    ctx.shutdown.onClose(() => m.stop());
  }
  // Module start-up leaves garbage behind; a daemon that then idles for days should not carry it.
  setTimeout(() => Bun.gc(true), 1_000).unref();
  return new Promise<number>((resolve) => ctx.shutdown.install(resolve));
}
