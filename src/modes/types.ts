import type { Config, OptionSpec } from "../config/option-spec.ts";
import type { ModeContext } from "../runtime/mode-context.ts";

export type { Config, OptionSpec, OptionType } from "../config/option-spec.ts";
export type { ModeContext } from "../runtime/mode-context.ts";

/** A mode of the binary; `C` is its config type (ConfigOf its options), parsed once by the CLI. */
export interface Mode<C = Config> {
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
  run(ctx: ModeContext<C>): Promise<number>;
}
