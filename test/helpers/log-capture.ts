import { createLogger, type Logger } from "../../src/runtime/log.ts";

/** A real pino logger whose lines are kept in memory, so tests can read what would have been logged. */
export function captureLogger(level = "debug"): {
  log: Logger;
  lines: () => Record<string, any>[];
  text: () => string;
} {
  const raw: string[] = [];
  const log = createLogger({ level, destination: { write: (l: string) => raw.push(l) } });
  return {
    log,
    lines: () => raw.flatMap((l) => l.split("\n").filter(Boolean)).map((l) => JSON.parse(l)),
    text: () => raw.join(""),
  };
}
