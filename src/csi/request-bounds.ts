import { invalidArgument } from "../runtime/errors.ts";

/**
 * Size limits checked on every request before anything (a log line included) looks at its values.
 * The CSI spec's general limits: a string field at most 128 bytes, a map<string,string> at most
 * 4 KiB in total. The spec lifts them for paths ("SP SHOULD support the maximum path length allowed
 * by the operating system") and for node_id (256 bytes); we take Linux's PATH_MAX (4096) and
 * NAME_MAX (255) for paths. Anything bigger is INVALID_ARGUMENT naming the field.
 */
export const LIMITS = {
  string: 128,
  nodeId: 256,
  path: 4096,
  pathComponent: 255,
  map: 4096,
  /** Entries of one repeated field (mount flags, capabilities, topologies). */
  list: 64,
  depth: 8,
} as const;

const PATH_FIELDS = new Set(["target_path", "staging_target_path", "volume_path", "staging_path"]);
/** Opaque tokens and ids the CSI spec lets the CO pass back; our own are short, the spec's cap applies. */
const LONGER_STRINGS: Record<string, number> = { node_id: LIMITS.nodeId };

const utf8Length = (s: string) => Buffer.byteLength(s, "utf8");

function checkString(field: string, key: string, value: string): void {
  if (value.includes("\0")) throw invalidArgument(field, "must not contain NUL");
  if (PATH_FIELDS.has(key)) {
    const n = utf8Length(value);
    if (n > LIMITS.path) throw invalidArgument(field, `is ${n} bytes long; a path may have at most ${LIMITS.path}`);
    for (const part of value.split("/")) {
      if (utf8Length(part) > LIMITS.pathComponent) {
        throw invalidArgument(
          field,
          `has a path component of ${utf8Length(part)} bytes; at most ${LIMITS.pathComponent} are allowed`,
        );
      }
    }
    return;
  }
  const max = LONGER_STRINGS[key] ?? LIMITS.string;
  // Cheap first: a UTF-16 length above the byte limit is always too long.
  if (value.length > max || utf8Length(value) > max) throw invalidArgument(field, `is longer than ${max} bytes`);
}

function checkMap(field: string, value: Record<string, unknown>): void {
  let total = 0;
  let n = 0;
  for (const k in value) {
    const v = value[k];
    if (typeof v !== "string") throw invalidArgument(`${field}`, `must map strings to strings`);
    if (k.includes("\0") || v.includes("\0")) throw invalidArgument(field, "must not contain NUL");
    total += k.length + v.length;
    // Stop counting as soon as the answer is known: a map of 100,000 entries is refused at 4 KiB.
    if (total > LIMITS.map || ++n > LIMITS.map)
      throw invalidArgument(field, `is larger than ${LIMITS.map} bytes (keys and values together)`);
  }
  let bytes = 0;
  for (const k in value) bytes += utf8Length(k) + utf8Length(value[k] as string);
  if (bytes > LIMITS.map) throw invalidArgument(field, `is larger than ${LIMITS.map} bytes (keys and values together)`);
}

/** Map fields of the CSI messages (string → string). */
const MAP_FIELDS = new Set([
  "parameters",
  "volume_context",
  "publish_context",
  "secrets",
  "mutable_parameters",
  "segments",
  "attributes",
]);

/**
 * Walks a decoded request once, refusing the first field over its limit. Linear in the request's
 * size and stops early, so a 4 MiB message of hostile fields costs microseconds, not the event loop.
 */
export function checkRequestBounds(req: unknown, field = "", depth = 0): void {
  if (req === null || req === undefined || typeof req !== "object") return;
  if (depth > LIMITS.depth) throw invalidArgument(field || "request", "is nested too deeply");
  if (Array.isArray(req)) {
    if (req.length > LIMITS.list)
      throw invalidArgument(field, `has ${req.length} entries; at most ${LIMITS.list} are allowed`);
    req.forEach((item, i) => {
      if (typeof item === "string") checkString(`${field}[${i}]`, "", item);
      else checkRequestBounds(item, `${field}[${i}]`, depth + 1);
    });
    return;
  }
  if (req instanceof Uint8Array) return;
  for (const key in req) {
    const value = (req as Record<string, unknown>)[key];
    const name = field ? `${field}.${key}` : key;
    if (typeof value === "string") checkString(name, key, value);
    else if (MAP_FIELDS.has(key) && value && typeof value === "object" && !Array.isArray(value))
      checkMap(name, value as Record<string, unknown>);
    else if (value && typeof value === "object") checkRequestBounds(value, name, depth + 1);
  }
}
