import type { Config } from "../config/option-spec.ts";
import type { BreakerRegistry } from "./breakers.ts";
import type { Runner, RunnerStats } from "./exec.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metric-sink.ts";
import type { ShutdownCoordinator } from "./shutdown.ts";

/** The process-wide services a mode runs with, built once from its validated config. */
export interface ModeContext<C = Config> {
  /** The mode this process runs (csi-node, gc, …): logs and the admin socket's /status report it. */
  mode: string;
  /** Every option parsed and validated once, typed by the mode's own option list (ConfigOf). */
  config: C;
  log: Logger;
  runner: Runner & RunnerStats;
  breakers: BreakerRegistry;
  shutdown: ShutdownCoordinator;
  metrics: Metrics;
  version: string;
  /** Positional arguments after the mode's own (e.g. breaker reset <key>). */
  positionals: string[];
}
