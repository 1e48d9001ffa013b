import * as v from "valibot";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "500ms", "10s", "5m", "1h", or a bare number of seconds → milliseconds. */
export function parseDurationMs(input: unknown): number | undefined {
  if (typeof input === "number") return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined;
  if (typeof input !== "string") return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(input.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? "s"]!);
}

export const DurationMs = v.pipe(
  v.union([v.string(), v.number()]),
  v.check((x) => parseDurationMs(x) !== undefined, "must be a duration like 500ms, 10s, 5m, 1h or a number of seconds"),
  v.transform((x) => parseDurationMs(x)!),
);

export const PositiveInt = v.pipe(v.number("must be a number"), v.integer("must be a whole number"), v.minValue(1, "must be at least 1"));
export const NonNegativeInt = v.pipe(v.number("must be a number"), v.integer("must be a whole number"), v.minValue(0, "must not be negative"));

export const AbsolutePath = v.pipe(
  v.string(),
  v.startsWith("/", "must be an absolute path"),
  v.check((s) => !s.split("/").includes(".."), "must not contain '..'"),
);

/** unix:///abs/path.sock, unix:/abs/path.sock or tcp://host:port (tests). */
export const Endpoint = v.pipe(
  v.string(),
  v.regex(/^(unix:\/\/\/?\/.+|unix:\/.+|tcp:\/\/[^\s/]+:\d+)$/, "must be unix:///absolute/path.sock or tcp://host:port"),
);

export const HostPort = v.pipe(v.string(), v.regex(/^(\[[^\]]+\]|[^\s:]*):\d{1,5}$/, "must be host:port (e.g. 127.0.0.1:9808 or :9808)"));

export const FileMode = v.pipe(
  v.union([v.string(), v.number()]),
  v.check((x) => /^0?[0-7]{3}$/.test(String(x)), "must be an octal file mode like 0600"),
  v.transform((x) => parseInt(String(x), 8)),
);
