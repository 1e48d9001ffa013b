import yargs, { type Argv } from "yargs";
import { COMMON_OPTIONS } from "./config/options.ts";
import { ConfigError, envName, loadConfig } from "./config/load.ts";
import { loadModes, MODE_NAMES } from "./modes/index.ts";
import type { Mode, OptionSpec } from "./modes/types.ts";
import { createRuntime } from "./runtime/index.ts";
import { VERSION } from "./version.ts";

export const EXIT_USAGE = 2;

function describeOption(spec: OptionSpec): string {
  const bits = [spec.describe, `[env ${envName(spec.name)}${spec.env?.length ? `, ${spec.env.join(", ")}` : ""}]`];
  return bits.join(" ");
}

function addOptions(y: Argv, specs: readonly OptionSpec[]): Argv {
  for (const spec of specs) {
    // No yargs defaults: the config loader must see which flags were really given (flag > env > file > default).
    y.option(spec.name, {
      // Numbers reach the config loader as written: yargs would turn `--max-volumes=` into 0 and `1e999` into Infinity.
      type: spec.type === "number" ? "string" : spec.type,
      describe: describeOption(spec),
      ...(spec.default !== undefined && !(Array.isArray(spec.default) && spec.default.length === 0)
        ? { defaultDescription: JSON.stringify(spec.default) }
        : {}),
      ...(spec.choices ? { choices: spec.choices as string[] } : {}),
      ...(spec.alias ? { alias: spec.alias } : {}),
      ...(spec.type === "boolean" ? { default: undefined } : {}),
    });
    for (const old of spec.deprecated ?? []) {
      y.option(old, {
        type: spec.type === "number" ? "string" : spec.type,
        hidden: true,
        describe: `deprecated: use --${spec.name}`,
      });
    }
  }
  return y;
}

function givenFlags(argv: Record<string, unknown>, specs: readonly OptionSpec[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of specs) {
    for (const name of [s.name, ...(s.deprecated ?? [])]) if (argv[name] !== undefined) out[name] = argv[name];
  }
  return out;
}

async function runMode(mode: Mode, argv: Record<string, unknown>): Promise<number> {
  const specs = [...COMMON_OPTIONS, ...mode.options];
  let loaded;
  try {
    loaded = loadConfig({ specs, flags: givenFlags(argv, specs), env: process.env, required: mode.required });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`rds-csi ${mode.command}: ${e.message.replace(/\s*\n\s*/g, "; ")}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
  for (const w of loaded.warnings) process.stderr.write(`rds-csi ${mode.command}: warning: ${w}\n`);
  const positionals = (argv["_"] as unknown[]).slice(1).map(String);
  for (const p of (mode.positional ?? "").match(/[<[](\w+)[\]>]/g) ?? []) {
    const name = p.slice(1, -1);
    if (argv[name] !== undefined) positionals.push(String(argv[name]));
  }
  // prom-client (and its process metrics) only in a process that serves them.
  const metrics =
    mode.servesMetrics && loaded.config.metricsAddress
      ? (await import("./runtime/metrics.ts")).createMetrics({ defaultMetrics: true })
      : undefined;
  const ctx = createRuntime(loaded.config, {
    mode: mode.command,
    version: VERSION,
    positionals,
    logToStderr: mode.logToStderr,
    ...(metrics ? { metrics } : {}),
  });
  return mode.run(ctx);
}

export async function main(args: string[]): Promise<number> {
  let exitCode = 0;
  let cli = yargs(args)
    .scriptName("rds-csi")
    .usage("$0 <mode> [options]\n\nKubernetes CSI driver for MikroTik RDS volumes over NVMe/TCP, with gc and doctor.")
    .strict()
    .demandCommand(1, `Name a mode: ${MODE_NAMES.join(", ")}`)
    .recommendCommands()
    .help()
    .alias("h", "help")
    .version(false)
    .wrap(Math.min(120, process.stdout.columns || 100))
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`rds-csi: ${String(msg).replace(/\s*\n\s*/g, "; ")} (rds-csi --help lists the options)\n`);
      process.exit(EXIT_USAGE);
    });
  for (const mode of await loadModes(args[0])) {
    const specs = mode.command === "version" ? [] : [...COMMON_OPTIONS, ...mode.options];
    cli = cli.command(
      `${mode.command}${mode.positional ? ` ${mode.positional}` : ""}`,
      mode.describe,
      (y) => addOptions(y, specs),
      async (argv) => {
        exitCode = await runMode(mode, argv as Record<string, unknown>);
      },
    );
  }
  await cli.parseAsync();
  return exitCode;
}
