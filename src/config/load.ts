import { closeSync, fstatSync, openSync, readSync, constants as fsc } from "node:fs";
import * as v from "valibot";
import YAML from "yaml";
import type { Config, ConfigOf, OptionSpec } from "./option-spec.ts";

/** A configuration problem: one line naming the option, where the value came from, and the value. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export type Source = "flag" | "env" | "file" | "default";

export const envName = (option: string) => `RDS_CSI_${option.toUpperCase().replace(/-/g, "_")}`;
export const camel = (option: string) => option.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function coerce(spec: OptionSpec, raw: unknown): unknown {
  switch (spec.type) {
    case "number":
      if (typeof raw === "string" && raw.trim() !== "" && !Number.isNaN(Number(raw))) return Number(raw);
      return raw;
    case "boolean":
      if (typeof raw === "string") {
        const s = raw.trim().toLowerCase();
        if (["1", "true", "yes", "on"].includes(s)) return true;
        if (["0", "false", "no", "off", ""].includes(s)) return false;
      }
      return raw;
    case "array":
      if (typeof raw === "string")
        return raw
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
      if (Array.isArray(raw))
        return raw.flatMap((x) =>
          typeof x === "string"
            ? x
                .split(",")
                .map((s) => s.trim())
                .filter(Boolean)
            : [x],
        );
      return raw;
    default:
      return typeof raw === "number" ? String(raw) : raw;
  }
}

function typeProblem(spec: OptionSpec, value: unknown): string | null {
  const ok =
    spec.type === "array"
      ? Array.isArray(value)
      : spec.type === "number"
        ? typeof value === "number" && Number.isFinite(value)
        : typeof value === spec.type;
  return ok ? null : `must be a ${spec.type}`;
}

/** A config file is a few KiB; anything near this is not one (`--config /dev/zero` once grew to 4 GB). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * Opened without blocking (a FIFO would wait for a writer forever), then required to be a regular
 * file of bounded size before a byte is read.
 */
function readBoundedRegularFile(path: string): string {
  const fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error("is not a regular file");
    if (st.size > MAX_CONFIG_BYTES) throw new Error(`is ${st.size} bytes; at most ${MAX_CONFIG_BYTES} are read`);
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let n = 0;
    for (let r = 1; r > 0 && n <= MAX_CONFIG_BYTES; n += r) r = readSync(fd, buf, n, buf.length - n, null);
    if (n > MAX_CONFIG_BYTES) throw new Error(`grew past ${MAX_CONFIG_BYTES} bytes while being read`);
    return buf.subarray(0, n).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readBoundedRegularFile(path);
  } catch (e) {
    throw new ConfigError(`option --config: cannot read ${JSON.stringify(path)}: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = /\.json$/i.test(path) ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    throw new ConfigError(
      `option --config: ${JSON.stringify(path)} is not valid ${/\.json$/i.test(path) ? "JSON" : "YAML"}: ${(e as Error).message.split("\n")[0]}`,
    );
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== "object" || Array.isArray(data))
    throw new ConfigError(`option --config: ${JSON.stringify(path)} must hold a mapping of option names to values`);
  return data as Record<string, unknown>;
}

export interface LoadInput<S extends readonly OptionSpec[] = readonly OptionSpec[]> {
  specs: S;
  /** Only flags the user actually gave (yargs is configured without defaults). */
  flags: Record<string, unknown>;
  env: Record<string, string | undefined>;
  required?: readonly string[];
}

/**
 * Merge flag > env > file > default, then validate every option. Throws ConfigError on the first
 * bad value; nothing has been touched yet when this runs.
 */
export function loadConfig<S extends readonly OptionSpec[]>(
  input: LoadInput<S>,
): { config: ConfigOf<S>; sources: Record<string, Source>; warnings: string[] } {
  const byName = new Map(input.specs.map((s) => [s.name, s]));
  const warnings: string[] = [];
  // Earlier names of an option: accepted from flag, environment and file, each use warned once.
  const renamed = new Map(input.specs.flatMap((s) => (s.deprecated ?? []).map((old) => [old, s.name] as const)));
  const flags = { ...input.flags };
  for (const [old, now] of renamed) {
    if (flags[old] === undefined) continue;
    warnings.push(`option --${old} is deprecated: use --${now}`);
    if (flags[now] === undefined) flags[now] = flags[old];
    delete flags[old];
  }
  const configPath = (input.flags["config"] as string | undefined) ?? input.env[envName("config")];
  const file = configPath ? readConfigFile(configPath) : {};
  const fileValues = new Map<string, unknown>();
  for (const [key, value] of Object.entries(file)) {
    let name = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`).replace(/_/g, "-");
    const now = renamed.get(name);
    if (now) {
      warnings.push(`config file ${configPath}: key ${JSON.stringify(key)} is deprecated: use ${JSON.stringify(now)}`);
      name = now;
    }
    if (!byName.has(name) || name === "config")
      throw new ConfigError(`config file ${configPath}: unknown option ${JSON.stringify(key)}`);
    fileValues.set(name, value);
  }

  const config: Config = {};
  const sources: Record<string, Source> = {};
  for (const spec of input.specs) {
    let raw: unknown;
    let source: Source = "default";
    let where = "default";
    const envNames = [envName(spec.name), ...(spec.env ?? []), ...(spec.deprecated ?? []).map(envName)];
    const envHit = envNames.find((n) => input.env[n] !== undefined && input.env[n] !== "");
    if (envHit && (spec.deprecated ?? []).map(envName).includes(envHit) && input.flags[spec.name] === undefined) {
      warnings.push(`environment ${envHit} is deprecated: use ${envName(spec.name)}`);
    }
    if (flags[spec.name] !== undefined) {
      raw = flags[spec.name];
      source = "flag";
      where = `--${spec.name}`;
    } else if (envHit) {
      raw = input.env[envHit];
      source = "env";
      where = `environment ${envHit}`;
    } else if (fileValues.has(spec.name)) {
      raw = fileValues.get(spec.name);
      source = "file";
      where = `config file ${configPath}`;
    } else {
      raw = spec.default;
    }
    if (raw === undefined) continue;
    // `--max-volumes=` once meant 0: a single value given empty is a mistake, not a default. A list
    // given empty is an empty list (`--referenced-volumes ""`: no volume is referenced).
    if (source !== "default" && spec.type !== "array" && raw === "") {
      throw new ConfigError(`option --${spec.name} (${where}): an empty value is not allowed`);
    }

    const shown = spec.secret ? "(secret)" : JSON.stringify(raw);
    const value = coerce(spec, raw);
    const typeErr = typeProblem(spec, value);
    if (typeErr) throw new ConfigError(`option --${spec.name} (${where}): value ${shown} ${typeErr}`);
    if (spec.choices && !spec.choices.includes(value as string)) {
      throw new ConfigError(
        `option --${spec.name} (${where}): value ${shown} must be one of ${spec.choices.join(", ")}`,
      );
    }
    let final = value;
    if (spec.schema) {
      const r = v.safeParse(spec.schema, value);
      if (!r.success) {
        const issue = r.issues[0];
        const at = issue?.path?.length ? ` (item ${issue.path.map((p) => String(p.key)).join(".")})` : "";
        throw new ConfigError(
          `option --${spec.name} (${where}): value ${shown}${at} ${issue?.message ?? "is invalid"}`,
        );
      }
      final = r.output;
    }
    config[camel(spec.name)] = final;
    sources[spec.name] = source;
  }
  for (const name of input.required ?? []) {
    if (config[camel(name)] === undefined) {
      throw new ConfigError(
        `option --${name} is required for this mode (flag --${name}, environment ${envName(name)}, or the config file)`,
      );
    }
  }
  // The one place a config becomes typed: every value above went through its option's schema.
  return { config: config as ConfigOf<S>, sources, warnings };
}
