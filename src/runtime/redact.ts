/**
 * Secret scrubbing for anything that may reach a log line: structured fields (by key name) and
 * free text such as command lines or HTTP errors (by pattern). Both lists err on the side of hiding.
 */
export const REDACTED = "[REDACTED]";

const SECRET_KEY =
  /pass(word|wd)?|secret|token|authorization|auth[-_]?key|chap|dhchap|credential|api[-_]?key|private[-_]?key/i;

export const isSecretKey = (key: string) => SECRET_KEY.test(key);

/** Flags whose next argument is a secret (nvme-cli DH-CHAP keys, generic password flags). */
const SECRET_FLAGS = new Set([
  "-S",
  "--dhchap-secret",
  "-C",
  "--dhchap-ctrl-secret",
  "--password",
  "--token",
  "-p",
  "--secret",
]);

/**
 * Every pattern starts at a fixed word and every repetition is bounded, so one pass costs at most a
 * constant per input character: a log line built from a hostile 1 MiB request field must not stall
 * the main thread (an unanchored `[\w.-]*password` prefix was quadratic).
 */
const TEXT_PATTERNS: [RegExp, string][] = [
  [/(authorization:\s{0,16})(basic|bearer)\s{1,16}[^\s]{1,4096}/gi, `$1$2 ${REDACTED}`],
  [/\b(basic|bearer)\s{1,16}[A-Za-z0-9+/=._-]{8,4096}/gi, `$1 ${REDACTED}`],
  [/DHHC-1:[0-9a-f]{2}:[A-Za-z0-9+/=]{1,4096}:?/g, REDACTED],
  [
    /((?:password|passwd|secret|token|chap)[\w.-]{0,64}\s{0,16}[=:]\s{0,16})("[^"]{0,4096}"?|'[^']{0,4096}'?|[^\s,&"'}]{1,4096})/gi,
    `$1${REDACTED}`,
  ],
  [/(https?:\/\/)([^:@/\s]{1,256}):([^@/\s]{1,1024})@/gi, `$1$2:${REDACTED}@`],
];

/** Longest text kept in a log value; the rest is cut before any pattern runs (bounded work per line). */
export const MAX_LOGGED_TEXT = 16 * 1024;

export function redactText(text: string): string {
  let out =
    text.length > MAX_LOGGED_TEXT
      ? `${text.slice(0, MAX_LOGGED_TEXT)}…[${text.length - MAX_LOGGED_TEXT} more characters cut]`
      : text;
  for (const [re, repl] of TEXT_PATTERNS) out = out.replace(re, repl);
  return out;
}

/** Redacts a command's argument vector: values after secret flags, and `--flag=secret` forms. */
export function redactArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf("=");
    if (a.startsWith("-") && eq > 0 && (SECRET_FLAGS.has(a.slice(0, eq)) || isSecretKey(a.slice(0, eq)))) {
      out.push(`${a.slice(0, eq)}=${REDACTED}`);
    } else if (SECRET_FLAGS.has(a) && i + 1 < args.length) {
      out.push(a, REDACTED);
      i++;
    } else {
      out.push(redactText(a));
    }
  }
  return out;
}

/** Deep copy of a plain value with secret-named keys replaced and strings scrubbed. */
export function redactValue(value: unknown, depth = 0): unknown {
  if (depth > 8) return "[…]";
  if (typeof value === "string") return redactText(value);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  if (value && typeof value === "object" && !(value instanceof Error)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = isSecretKey(k) && v !== undefined && v !== null && v !== "" ? REDACTED : redactValue(v, depth + 1);
    }
    return out;
  }
  return value;
}
