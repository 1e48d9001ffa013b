import type { Config } from "../config/option-spec.ts";
import type { ModeContext } from "./mode-context.ts";
import { createBreakerRegistry } from "./breakers.ts";
import { createRunner } from "./exec.ts";
import { createLogger, type LogFormat } from "./log.ts";
import { recordBreakerState, silentMetrics, type Metrics } from "./metric-sink.ts";
import { createShutdownCoordinator } from "./shutdown.ts";

/** Builds the process-wide services every mode shares, from an already validated config. */
export function createRuntime(
  config: Config,
  opts: { mode: string; version: string; positionals?: string[]; logToStderr?: boolean; metrics?: Metrics },
): ModeContext {
  const log = createLogger({
    level: config.logLevel as string,
    format: config.logFormat as LogFormat,
    destination: opts.logToStderr ? process.stderr : process.stdout,
    base: { pid: process.pid, mode: opts.mode },
  });
  const metrics = opts.metrics ?? silentMetrics();
  const runner = createRunner({ log, onStuckChange: (n) => metrics.stuckChildren.set(n) });
  const breakers = createBreakerRegistry({
    threshold: config.breakerThreshold as number,
    initialOpenMs: config.breakerOpen as number,
    maxOpenMs: config.breakerMaxOpen as number,
    log,
    onStateChange: (key, state) => recordBreakerState(metrics, key, state),
  });
  const shutdown = createShutdownCoordinator({ graceMs: config.shutdownGrace as number, log });
  return { mode: opts.mode, config, log, runner, breakers, shutdown, metrics, version: opts.version, positionals: opts.positionals ?? [] };
}
