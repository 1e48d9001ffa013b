/**
 * A table-driven protobuf wire codec for the field kinds csi.proto uses (string, bool, int32, int64,
 * enum, message, map<string, …>, repeated string/message). The tables come from csi.proto through
 * scripts/gen-csi-wire.ts (src/csi/wire-csi.ts); protobufjs stays a build-time tool only, which keeps
 * its ~4 MB and the parsed .proto out of every CSI process (scripts/bench-startup.ts).
 *
 * Decoded objects have the shape protobufjs gives with toObject({ longs: Number, enums: String,
 * defaults: true, oneofs: true }) and keepCase: snake_case keys, int64 as numbers, enum names (an
 * unknown enum number stays a number), defaults filled in (messages null, lists [], maps {}), oneof
 * members only when present, with the oneof named after the member set. test/csi/wire.test.ts holds
 * the codec to protobufjs over every CSI message.
 */

/** Field kinds the generator may emit; it refuses any other, so the codec never meets one. */
export type ScalarKind = "string" | "bool" | "int32" | "int64" | "enum";
export type FieldKind = ScalarKind | "message" | "map";

export interface FieldRow {
  no: number;
  name: string;
  kind: FieldKind;
  /** Message or enum type (full name) for "message"/"enum", and for a map whose values are one. */
  ref?: string;
  /** Kind of a map's values (keys are strings). */
  value?: ScalarKind;
  repeated?: true;
  oneof?: string;
}

export interface WireSchema {
  messages: Record<string, readonly FieldRow[]>;
  /** Enum values by name; the first one listed is the default (proto3: number 0). */
  enums: Record<string, Record<string, number>>;
  /** Service full name → method → [request type, response type]. */
  services: Record<string, Record<string, readonly [string, string]>>;
}

/** Input that is not a well-formed message of the expected type. */
export class WireError extends Error {
  override name = "WireError";
}

export interface MessageCodec {
  readonly name: string;
  encode(value: object): Uint8Array;
  decode(bytes: Uint8Array): Record<string, unknown>;
}

// Wire types (protobuf encoding spec).
const VARINT = 0;
const I64 = 1;
const LEN = 2;
const SGROUP = 3;
const EGROUP = 4;
const I32 = 5;
const TWO32 = 4294967296;
/** Unknown groups nest; a hostile message must not recurse without bound. */
const MAX_GROUP_DEPTH = 64;

interface Field {
  no: number;
  name: string;
  /** What one value on the wire is: the field's own kind, or a map's value kind. */
  kind: ScalarKind | "message";
  map: boolean;
  repeated: boolean;
  oneof?: string;
  /** Tag of the field; for a map, of its entries. */
  tag: number;
  /** Tag of a map entry's value. */
  valueTag: number;
  type?: Message;
  enumType?: EnumType;
}

interface EnumType {
  name: string;
  byName: Record<string, number>;
  byNumber: Map<number, string>;
  defaultName: string;
}

interface Message {
  name: string;
  fields: Field[];
  byNo: Map<number, Field>;
}

const utf8 = new TextDecoder();

const wireTypeOf = (kind: Field["kind"]) => (kind === "string" || kind === "message" ? LEN : VARINT);

/** Builds the codecs of a schema; message types are resolved once, on first use. */
export function wireCodecs(schema: WireSchema): (typeName: string) => MessageCodec {
  const messages = new Map<string, Message>();
  const enums = new Map<string, EnumType>();

  function enumType(name: string): EnumType {
    let e = enums.get(name);
    if (!e) {
      const values = schema.enums[name];
      if (!values) throw new Error(`wire schema: no enum ${name}`);
      const byNumber = new Map<number, string>();
      for (const [k, n] of Object.entries(values)) if (!byNumber.has(n)) byNumber.set(n, k);
      e = { name, byName: values, byNumber, defaultName: Object.keys(values)[0]! };
      enums.set(name, e);
    }
    return e;
  }

  function message(name: string): Message {
    let m = messages.get(name);
    if (m) return m;
    const rows = schema.messages[name];
    if (!rows) throw new Error(`wire schema: no message ${name}`);
    m = { name, fields: [], byNo: new Map() };
    messages.set(name, m); // before the fields: a type may refer to itself
    for (const r of rows) {
      const kind = r.kind === "map" ? r.value! : r.kind;
      const f: Field = {
        no: r.no,
        name: r.name,
        kind,
        map: r.kind === "map",
        repeated: !!r.repeated,
        ...(r.oneof ? { oneof: r.oneof } : {}),
        tag: (r.no << 3) | (r.kind === "map" ? LEN : wireTypeOf(kind)),
        valueTag: (2 << 3) | wireTypeOf(kind),
      };
      if (kind === "message") f.type = message(r.ref!);
      if (kind === "enum") f.enumType = enumType(r.ref!);
      m.fields.push(f);
      m.byNo.set(r.no, f);
    }
    m.fields.sort((a, b) => a.no - b.no);
    return m;
  }

  const codecs = new Map<string, MessageCodec>();
  return (typeName) => {
    let c = codecs.get(typeName);
    if (!c) {
      const m = message(typeName);
      c = {
        name: typeName,
        encode: (value) => {
          const w = new Writer();
          encodeMessage(w, m, value, m.name);
          return w.finish();
        },
        decode: (bytes) => {
          const r = new Reader(bytes);
          return decodeMessage(r, m, bytes.length);
        },
      };
      codecs.set(typeName, c);
    }
    return c;
  };
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  fail(what: string): never {
    throw new WireError(`malformed protobuf: ${what} at byte ${this.pos} of ${this.buf.length}`);
  }

  /** A varint as [low 32 bits, high 32 bits], both unsigned. */
  varint64(end: number): [number, number] {
    let lo = 0;
    let hi = 0;
    const buf = this.buf;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) this.fail("truncated varint");
      const b = buf[this.pos++]!;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
    }
    return this.fail("varint longer than 10 bytes");
  }

  /** A varint's low 32 bits, unsigned (tags, lengths, int32 after `| 0`). */
  varint32(end: number): number {
    return this.varint64(end)[0];
  }

  length(end: number): number {
    const [n, hi] = this.varint64(end);
    if (hi !== 0 || this.pos + n > end) this.fail(`length ${hi ? "≥ 4 GiB" : n} past the end of the message`);
    return n;
  }
}

function defaults(m: Message): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const f of m.fields) {
    if (f.oneof) continue;
    if (f.repeated) o[f.name] = [];
    else if (f.map) o[f.name] = {};
    else o[f.name] = defaultOf(f);
  }
  return o;
}

function defaultOf(f: Field): unknown {
  switch (f.kind) {
    case "string":
      return "";
    case "bool":
      return false;
    case "int32":
    case "int64":
      return 0;
    case "enum":
      return f.enumType!.defaultName;
    case "message":
      return null;
  }
}

function decodeMessage(r: Reader, m: Message, end: number): Record<string, unknown> {
  const o = defaults(m);
  while (r.pos < end) {
    const tag = r.varint32(end);
    const no = tag >>> 3;
    const wt = tag & 7;
    if (no === 0) r.fail(`field number 0 in ${m.name}`);
    const f = m.byNo.get(no);
    if (!f) {
      skip(r, wt, no, end, 0);
      continue;
    }
    if (wt !== (f.tag & 7)) r.fail(`${m.name}.${f.name} (field ${no}) has wire type ${wt}, expected ${f.tag & 7}`);
    if (f.map) {
      const n = r.length(end);
      const [k, v] = decodeMapEntry(r, f, m, r.pos + n);
      const map = o[f.name] as Record<string, unknown>;
      // A key named __proto__ is data, never the object's prototype.
      if (k === "__proto__")
        Object.defineProperty(map, k, { value: v, enumerable: true, writable: true, configurable: true });
      else map[k] = v;
    } else if (f.repeated) (o[f.name] as unknown[]).push(decodeValue(r, f, end));
    else {
      o[f.name] = decodeValue(r, f, end);
      if (f.oneof) {
        // Setting one member of a oneof clears the others (last one on the wire wins).
        for (const g of m.fields) if (g.oneof === f.oneof && g !== f) delete o[g.name];
        o[f.oneof] = f.name;
      }
    }
  }
  return o;
}

function decodeValue(r: Reader, f: Field, end: number): unknown {
  switch (f.kind) {
    case "string": {
      const n = r.length(end);
      const s = utf8.decode(r.buf.subarray(r.pos, r.pos + n));
      r.pos += n;
      return s;
    }
    case "message": {
      const n = r.length(end);
      return decodeMessage(r, f.type!, r.pos + n);
    }
    case "bool": {
      const [lo, hi] = r.varint64(end);
      return (lo | hi) !== 0;
    }
    case "int32":
      return r.varint32(end) | 0;
    case "int64": {
      const [lo, hi] = r.varint64(end);
      return (hi | 0) * TWO32 + lo;
    }
    case "enum": {
      const n = r.varint32(end) | 0;
      return f.enumType!.byNumber.get(n) ?? n;
    }
  }
}

function decodeMapEntry(r: Reader, f: Field, m: Message, end: number): [string, unknown] {
  let key = "";
  let value: unknown = defaultOf(f);
  while (r.pos < end) {
    const tag = r.varint32(end);
    if (tag === ((1 << 3) | LEN)) {
      const n = r.length(end);
      key = utf8.decode(r.buf.subarray(r.pos, r.pos + n));
      r.pos += n;
    } else if (tag === f.valueTag) value = decodeValue(r, f, end);
    else if (tag >>> 3 === 1 || tag >>> 3 === 2)
      r.fail(`${m.name}.${f.name} map entry field ${tag >>> 3} has wire type ${tag & 7}`);
    else if (tag >>> 3 === 0) r.fail(`field number 0 in a ${m.name}.${f.name} map entry`);
    else skip(r, tag & 7, tag >>> 3, end, 0);
  }
  return [key, value];
}

/** Skips an unknown field (a newer peer's addition): its value is read past, never kept. */
function skip(r: Reader, wt: number, no: number, end: number, depth: number): void {
  switch (wt) {
    case VARINT:
      r.varint64(end);
      return;
    case LEN: {
      const n = r.length(end); // read before r.pos: reading the length moves it
      r.pos += n;
      return;
    }
    case I64:
    case I32: {
      const n = wt === I64 ? 8 : 4;
      if (r.pos + n > end) r.fail(`truncated ${n * 8}-bit field ${no}`);
      r.pos += n;
      return;
    }
    case SGROUP: {
      if (depth >= MAX_GROUP_DEPTH) r.fail(`groups nested deeper than ${MAX_GROUP_DEPTH}`);
      for (;;) {
        if (r.pos >= end) r.fail(`group ${no} without its end`);
        const tag = r.varint32(end);
        if ((tag & 7) === EGROUP) {
          if (tag >>> 3 !== no) r.fail(`group ${no} ended by field ${tag >>> 3}`);
          return;
        }
        skip(r, tag & 7, tag >>> 3, end, depth + 1);
      }
    }
    default:
      r.fail(`wire type ${wt} (field ${no})`);
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

class Writer {
  buf = Buffer.allocUnsafe(256);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint32(v: number): void {
    this.ensure(5);
    v >>>= 0;
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }

  /** Two's complement 64-bit varint from its halves (a negative value takes all 10 bytes). */
  varint64(lo: number, hi: number): void {
    this.ensure(10);
    lo >>>= 0;
    hi >>>= 0;
    while (hi !== 0 || lo > 0x7f) {
      this.buf[this.pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.buf[this.pos++] = lo;
  }

  string(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.varint32(n);
    this.ensure(n);
    this.pos += this.buf.write(s, this.pos, n, "utf8");
  }

  /** Writes what `body` writes, preceded by its length. */
  delimited(body: () => void): void {
    this.ensure(1);
    const start = ++this.pos;
    body();
    const n = this.pos - start;
    if (n < 0x80) {
      this.buf[start - 1] = n;
      return;
    }
    let size = 1;
    while (n >>> (7 * size) !== 0) size++;
    this.ensure(size - 1);
    this.buf.copy(this.buf, start + size - 1, start, this.pos);
    this.pos = start - 1;
    this.varint32(n);
    this.pos += n;
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

const typeError = (where: string, what: string, v: unknown) =>
  new WireError(`${where}: ${what} expected, got ${v === null ? "null" : typeof v}`);

function encodeMessage(w: Writer, m: Message, value: unknown, where: string): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw typeError(where, "object", value);
  const o = value as Record<string, unknown>;
  // Like protobufjs: a field is written when it is set (not null/undefined), its default included.
  for (const f of m.fields) {
    const v = o[f.name];
    if (v == null) continue;
    const at = `${where}.${f.name}`;
    if (f.map) {
      if (typeof v !== "object" || Array.isArray(v)) throw typeError(at, "object", v);
      for (const k of Object.keys(v)) {
        w.varint32(f.tag);
        w.delimited(() => {
          w.varint32((1 << 3) | LEN);
          w.string(k);
          encodeValue(w, f, f.valueTag, (v as Record<string, unknown>)[k], `${at}[${k}]`);
        });
      }
    } else if (f.repeated) {
      if (!Array.isArray(v)) throw typeError(at, "array", v);
      v.forEach((x, i) => encodeValue(w, f, f.tag, x, `${at}[${i}]`));
    } else encodeValue(w, f, f.tag, v, at);
  }
}

function encodeValue(w: Writer, f: Field, tag: number, v: unknown, at: string): void {
  switch (f.kind) {
    case "string":
      if (typeof v === "object" || typeof v === "function" || typeof v === "symbol") throw typeError(at, "string", v);
      w.varint32(tag);
      w.string(String(v));
      return;
    case "bool":
      w.varint32(tag);
      w.varint32(v ? 1 : 0);
      return;
    case "int32": {
      const n = integer(v, at, -(2 ** 31), 2 ** 31 - 1);
      w.varint32(tag);
      w.varint64(n, n < 0 ? -1 : 0);
      return;
    }
    case "int64": {
      const [lo, hi] = int64Halves(v, at);
      w.varint32(tag);
      w.varint64(lo, hi);
      return;
    }
    case "enum": {
      const e = f.enumType!;
      // A name must be one of the enum's; a number passes as it is (protobufjs does the same).
      const n =
        typeof v === "string"
          ? Object.hasOwn(e.byName, v)
            ? e.byName[v]
            : undefined
          : typeof v === "number" && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31
            ? v
            : undefined;
      if (n === undefined) throw new WireError(`${at}: ${JSON.stringify(v)} is not a value of ${e.name}`);
      w.varint32(tag);
      w.varint64(n, n < 0 ? -1 : 0);
      return;
    }
    case "message":
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw typeError(at, "object", v);
      w.varint32(tag);
      w.delimited(() => encodeMessage(w, f.type!, v, at));
      return;
  }
}

function integer(v: unknown, at: string, min: number, max: number): number {
  const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < min || n > max)
    throw new WireError(`${at}: an integer from ${min} to ${max} expected, got ${JSON.stringify(v)}`);
  return n;
}

/** An int64 from a safe integer, a bigint or a decimal string, as its two's complement halves. */
function int64Halves(v: unknown, at: string): [number, number] {
  if (typeof v === "number" && Number.isSafeInteger(v)) {
    const hi = Math.floor(v / TWO32);
    return [v - hi * TWO32, hi];
  }
  let b: bigint | undefined;
  if (typeof v === "bigint") b = v;
  else if (typeof v === "string" && /^-?\d+$/.test(v)) b = BigInt(v);
  if (b === undefined || b < -(2n ** 63n) || b >= 2n ** 63n)
    throw new WireError(`${at}: a 64-bit integer expected, got ${typeof v === "bigint" ? `${v}n` : JSON.stringify(v)}`);
  const u = BigInt.asUintN(64, b);
  return [Number(u & 0xffffffffn), Number(u >> 32n)];
}
