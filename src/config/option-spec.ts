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

/** `max-volumes` → `maxVolumes`: the key a parsed option has in the config. */
export type CamelCase<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;

/** The value type one option parses into: its schema's output, else what its `type` and `choices` say. */
export type OptionValue<O> = O extends { schema: v.GenericSchema<any, infer T> }
  ? T
  : O extends { choices: readonly (infer C)[] }
    ? C
    : O extends { type: "number" }
      ? number
      : O extends { type: "boolean" }
        ? boolean
        : O extends { type: "array" }
          ? string[]
          : string;

/** An option with a default (or one the mode requires) always has a value; the others may be unset. */
type Always<O, Required extends string> = O extends { default: {} }
  ? true
  : O extends { name: Required }
    ? true
    : false;

/**
 * The typed config of a list of options: parsed once by the loader (every value through its
 * schema), so the modes read `ctx.config.maxVolumes` as a number without a cast.
 */
export type ConfigOf<Specs extends readonly OptionSpec[], Required extends string = never> = {
  [O in Specs[number] as CamelCase<O["name"]>]: Always<O, Required> extends true
    ? OptionValue<O>
    : OptionValue<O> | undefined;
};
