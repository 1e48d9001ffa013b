import type * as v from "valibot";

/** How an option is declared once: the CLI flag, its environment name, the config-file key and its schema. */
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
  /** Earlier names (flag, RDS_CSI_ environment name, config key): still accepted, with a warning. */
  deprecated?: readonly string[];
}

export type Config = Record<string, unknown>;

