import type { ConfigOf } from "../config/option-spec.ts";
import type { COMMON_OPTIONS } from "../config/options.ts";
import type { ModeContext } from "./mode-context.ts";
import { createBreakerRegistry } from "./breakers.ts";
import { createRunner } from "./exec.ts";
import { createLogger } from "./log.ts";
import { recordBreakerState, silentMetrics, type Metrics } from "./metric-sink.ts";
import { createShutdownCoordinator } from "./shutdown.ts";

/** What every mode is configured with (COMMON_OPTIONS, parsed). */
export type CommonConfig = ConfigOf<typeof COMMON_OPTIONS>;

/** Builds the process-wide services every mode shares, from an already validated config. */
export function createRuntime<C extends CommonConfig>(
  config: C,
  opts: { mode: string; version: string; positionals?: string[]; logToStderr?: boolean; metrics?: Metrics },
): ModeContext<C> {
  const log = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    destination: opts.logToStderr ? process.stderr : process.stdout,
    base: { pid: process.pid, mode: opts.mode },
  });
  const metrics = opts.metrics ?? silentMetrics();
  const runner = createRunner({ log, onStuckChange: (n) => metrics.stuckChildren.set(n) });
  const breakers = createBreakerRegistry({
    threshold: config.breakerThreshold,
    initialOpenMs: config.breakerOpen,
    maxOpenMs: config.breakerMaxOpen,
    log,
    onStateChange: (key, state) => recordBreakerState(metrics, key, state),
  });
  const shutdown = createShutdownCoordinator({ graceMs: config.shutdownGrace, log });
  return {
    mode: opts.mode,
    config,
    log,
    runner,
    breakers,
    shutdown,
    metrics,
    version: opts.version,
    positionals: opts.positionals ?? [],
  };
}
