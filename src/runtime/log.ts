import pino from "pino";
import { redactText, redactValue } from "./redact.ts";

export type Logger = pino.Logger;
export type LogFormat = "json" | "pretty";

export interface LoggerOptions {
  level?: string;
  format?: LogFormat;
  /** Where lines go; defaults to stdout. Tests pass a collecting stream. */
  destination?: { write(line: string): unknown };
  base?: Record<string, unknown>;
}

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};

/** A human-readable line writer; pino's own pretty transport needs a worker thread, which the compiled binary lacks. */
function prettyStream(out: { write(line: string): unknown }) {
  return {
    write(line: string) {
      try {
        const { time, level, msg, pid: _p, hostname: _h, ...rest } = JSON.parse(line);
        const extras = Object.entries(rest)
          .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
          .join(" ");
        const ts = new Date(time).toISOString().slice(11, 23);
        out.write(
          `${ts} ${(LEVEL_NAMES[level] ?? String(level).toUpperCase()).padEnd(5)} ${msg ?? ""}${extras ? "  " + extras : ""}\n`,
        );
      } catch {
        out.write(line);
      }
    },
  };
}

/**
 * JSON lines by default. Every object and message passes through the redactor, so a secret that
 * slips into a field or a logged command line never reaches the output.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const dest = opts.destination ?? process.stdout;
  const stream = opts.format === "pretty" ? prettyStream(dest) : dest;
  return pino(
    {
      level: opts.level ?? "info",
      base: opts.base ?? { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          const scrubbed = args.map((a) => (typeof a === "string" ? redactText(a) : redactValue(a)));
          return method.apply(this, scrubbed as Parameters<typeof method>);
        },
      },
      serializers: { err: (e: unknown) => redactValue(pino.stdSerializers.err(e as Error)) },
    },
    stream as pino.DestinationStream,
  );
}

/** A logger that discards everything: for tests and for commands whose output is the report. */
export const silentLogger = (): Logger => pino({ level: "silent" });
