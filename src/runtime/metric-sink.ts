/**
 * What the code records into. prom-client stays unloaded unless the process serves /metrics
 * (`--metrics-address`): every other process records into the silent sink below, which costs
 * nothing and keeps callers free of "are metrics on?" checks.
 */
type Labels<L extends string> = Partial<Record<L, string | number>>;

export interface Metrics {
  rpcDuration: { observe(labels: Labels<"method" | "code">, seconds: number): void };
  rpcInFlight: { inc(labels: Labels<"method">): void; dec(labels: Labels<"method">): void };
  breakerState: { set(labels: Labels<"key">, value: number): void };
  breakerOpens: { inc(labels: Labels<"key">): void };
  /** Breakers reset by the PV annotation rds.csi.srvlab.io/reset-circuit-breaker=true (src/k8s/breaker-reset.ts). */
  breakerAnnotationResets: { inc(labels: Labels<"key">): void };
  stuckChildren: { set(value: number): void };
  /** The Prometheus text exposition of everything recorded; empty from the silent sink. */
  render(): Promise<string>;
}

/** Breaker state as a number so it graphs: 0 closed, 1 half-open, 2 open. */
export const BREAKER_STATE_VALUE = { closed: 0, "half-open": 1, open: 2 } as const;

export function silentMetrics(): Metrics {
  const none = { observe() {}, inc() {}, dec() {}, set() {} };
  return {
    rpcDuration: none,
    rpcInFlight: none,
    breakerState: none,
    breakerOpens: none,
    breakerAnnotationResets: none,
    stuckChildren: none,
    render: async () => "",
  };
}

export function recordBreakerState(metrics: Metrics, key: string, state: keyof typeof BREAKER_STATE_VALUE) {
  metrics.breakerState.set({ key }, BREAKER_STATE_VALUE[state]);
  if (state === "open") metrics.breakerOpens.inc({ key });
}

export function parseHostPort(address: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (!m) throw new Error(`metrics address ${JSON.stringify(address)} must be host:port`);
  return { hostname: m[1] ?? (m[2] || "0.0.0.0"), port: Number(m[3]) };
}
