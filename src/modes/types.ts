import type * as v from "valibot";
import type { BreakerRegistry } from "../runtime/breakers.ts";
import type { Runner, RunnerStats } from "../runtime/exec.ts";
import type { Logger } from "../runtime/log.ts";
import type { Metrics } from "../runtime/metric-sink.ts";
import type { ShutdownCoordinator } from "../runtime/shutdown.ts";

export type OptionType = "string" | "number" | "boolean" | "array";

export interface OptionSpec {
  /** kebab-case flag name; env RDS_CSI_<UPPER_SNAKE>; config file key (either spelling); ctx.config key camelCase. */
  name: string;
  type: OptionType;
  describe: string;
  default?: unknown;
  /** Validates (and may transform) the merged value. */
  schema?: v.GenericSchema<any, any>;
  choices?: readonly string[];
  /** Extra environment names, lower precedence than RDS_CSI_<NAME> (compatibility). */
  env?: readonly string[];
  /** The value is secret: never echoed in errors or logs. */
  secret?: boolean;
  alias?: string;
}

export type Config = Record<string, unknown>;

export interface ModeContext {
  config: Config;
  log: Logger;
  runner: Runner & RunnerStats;
  breakers: BreakerRegistry;
  shutdown: ShutdownCoordinator;
  metrics: Metrics;
  version: string;
  /** Positional arguments after the mode's own (e.g. breaker reset <key>). */
  positionals: string[];
}

export interface Mode {
  command: string;
  describe: string;
  options: readonly OptionSpec[];
  /** Option names (kebab) that must be set for this mode. */
  required?: readonly string[];
  /** yargs positional syntax after the command, e.g. "[action] [key]". */
  positional?: string;
  /** Modes whose stdout is a report (gc, doctor, breaker) send their log lines to stderr. */
  logToStderr?: boolean;
  /** Serves /metrics when --metrics-address is set: only then is prom-client loaded. */
  servesMetrics?: boolean;
  /** Long-running modes install signal handlers; one-shot modes may not need them. */
  run(ctx: ModeContext): Promise<number>;
}
