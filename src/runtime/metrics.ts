import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { BreakerRegistry } from "./breakers.ts";
import { BREAKER_STATE_VALUE, parseHostPort, type Metrics } from "./metric-sink.ts";

export type { Metrics } from "./metric-sink.ts";

/** Metrics backed by prom-client; loaded (dynamically) only by processes that serve /metrics. */
export interface PrometheusMetrics extends Metrics {
  registry: Registry;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): PrometheusMetrics {
  const registry = new Registry();
  // Process metrics (event-loop lag sampler, GC observer, /proc reads at scrape) only where they are scraped.
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: "rds_csi_" });
  return {
    registry,
    render: () => registry.metrics(),
    rpcDuration: new Histogram({
      name: "rds_csi_rpc_duration_seconds",
      help: "CSI RPC duration by method and gRPC status code",
      labelNames: ["method", "code"],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60],
      registers: [registry],
    }),
    rpcInFlight: new Gauge({
      name: "rds_csi_rpc_in_flight",
      help: "CSI RPCs currently running",
      labelNames: ["method"],
      registers: [registry],
    }),
    breakerState: new Gauge({
      name: "rds_csi_breaker_state",
      help: "Circuit breaker state: 0 closed, 1 half-open, 2 open",
      labelNames: ["key"],
      registers: [registry],
    }),
    breakerOpens: new Counter({
      name: "rds_csi_breaker_opens_total",
      help: "Times a circuit breaker opened",
      labelNames: ["key"],
      registers: [registry],
    }),
    breakerAnnotationResets: new Counter({
      name: "rds_csi_breaker_annotation_resets_total",
      help: "Circuit breakers reset by the PV annotation rds.csi.srvlab.io/reset-circuit-breaker=true",
      labelNames: ["key"],
      registers: [registry],
    }),
    stuckChildren: new Gauge({
      name: "rds_csi_stuck_children",
      help: "Child processes killed at their deadline that have not been reaped (likely D state)",
      registers: [registry],
    }),
  };
}

export function syncBreakerGauges(metrics: Metrics, breakers: BreakerRegistry) {
  for (const b of breakers.list()) metrics.breakerState.set({ key: b.key }, BREAKER_STATE_VALUE[b.state]);
}

/**
 * Serves /metrics (and /healthz) on host:port; returns a stop function. Off unless --metrics-address is
 * set. `metrics` is whatever renders the exposition: the process's metrics, or doctor's report with them.
 */
export function serveMetrics(address: string, metrics: Pick<Metrics, "render">, beforeScrape?: () => void) {
  const { hostname, port } = parseHostPort(address);
  const server = Bun.serve({
    hostname,
    port,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname === "/metrics") {
        beforeScrape?.();
        return new Response(await metrics.render(), { headers: { "content-type": Registry.PROMETHEUS_CONTENT_TYPE } });
      }
      if (url.pathname === "/healthz") return new Response("ok\n");
      return new Response("not found\n", { status: 404 });
    },
  });
  return { port: server.port, stop: () => server.stop(true) };
}
