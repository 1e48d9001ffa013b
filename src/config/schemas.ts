import * as v from "valibot";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * The longest deadline or period any option takes. A deadline a human could mean; far below what a
 * timer holds (2^31-1 ms, about 24.8 days): above that Node and Bun fire the timer after 1 ms, so
 * `--mkfs-timeout 600h` killed every mkfs at once.
 */
export const MAX_DURATION_MS = 24 * 3_600_000;
/** Counts (volumes, mount entries, failures) larger than this are typing errors, not settings. */
export const MAX_COUNT = 1_000_000;

/** "500ms", "10s", "5m", "1h", or a bare number of seconds → milliseconds. */
export function parseDurationMs(input: unknown): number | undefined {
  if (typeof input === "number") return Number.isFinite(input) && input >= 0 ? Math.round(input * 1000) : undefined;
  if (typeof input !== "string") return undefined;
  const m = /^(\d{1,12}(?:\.\d{1,6})?)(ms|s|m|h)?$/.exec(input.trim());
  if (!m) return undefined;
  const ms = Math.round(Number(m[1]) * UNIT_MS[m[2] ?? "s"]!);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

export const DurationMs = v.pipe(
  v.union([v.string(), v.number()]),
  v.check((x) => parseDurationMs(x) !== undefined, "must be a duration like 500ms, 10s, 5m, 1h or a number of seconds"),
  v.transform((x) => parseDurationMs(x)!),
  v.maxValue(MAX_DURATION_MS, "must be at most 24h"),
);

export const PositiveInt = v.pipe(
  v.number("must be a number"),
  v.integer("must be a whole number"),
  v.minValue(1, "must be at least 1"),
  v.maxValue(MAX_COUNT, `must be at most ${MAX_COUNT}`),
);
export const NonNegativeInt = v.pipe(
  v.number("must be a number"),
  v.integer("must be a whole number"),
  v.minValue(0, "must not be negative"),
  v.maxValue(MAX_COUNT, `must be at most ${MAX_COUNT}`),
);

export const AbsolutePath = v.pipe(
  v.string(),
  v.startsWith("/", "must be an absolute path"),
  v.check((s) => !s.split("/").includes(".."), "must not contain '..'"),
  v.check((s) => !/[\x00-\x1f\x7f]/.test(s), "must not contain control characters"),
  v.check((s) => Buffer.byteLength(s) <= 4096, "must be at most 4096 bytes"),
);

/** A unix socket path must fit sun_path (108 bytes with its NUL). */
const SUN_PATH_MAX = 107;
const portOf = (s: string) => Number(/:(\d{1,5})$/.exec(s)?.[1] ?? NaN);

/** unix:///abs/path.sock, unix:/abs/path.sock or tcp://host:port (tests). `unix://rel.sock` is relative: refused. */
export const Endpoint = v.pipe(
  v.string(),
  v.regex(
    /^(unix:(\/\/)?\/(?!\/)\S+|tcp:\/\/[^\s/]+:\d{1,5})$/,
    "must be unix:///absolute/path.sock or tcp://host:port",
  ),
  v.check((s) => !s.startsWith("unix:") || !s.split("/").includes(".."), "must not contain '..'"),
  v.check(
    (s) => !s.startsWith("unix:") || Buffer.byteLength(s.replace(/^unix:(\/\/)?/, "")) <= SUN_PATH_MAX,
    `must be a socket path of at most ${SUN_PATH_MAX} bytes`,
  ),
  v.check((s) => !s.startsWith("tcp:") || (portOf(s) >= 1 && portOf(s) <= 65535), "must have a port in 1..65535"),
);

export const HostPort = v.pipe(
  v.string(),
  v.regex(/^(\[[^\]]+\]|[^\s:]*):\d{1,5}$/, "must be host:port (e.g. 127.0.0.1:9808 or :9808)"),
  v.check((s) => portOf(s) >= 1 && portOf(s) <= 65535, "must have a port in 1..65535"),
);

export const FileMode = v.pipe(
  v.union([v.string(), v.number()]),
  v.check((x) => /^0?[0-7]{3}$/.test(String(x)), "must be an octal file mode like 0600"),
  v.transform((x) => parseInt(String(x), 8)),
);
