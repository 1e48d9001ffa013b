/**
 * src/csi/wire.ts against protobufjs (what the services were fed before, and what the test client
 * still uses) over every message type of csi.proto: random values through both encoders must give
 * the same bytes, and random bytes (with unknown fields mixed in) through both decoders the same
 * objects. Then what protobufjs would let through and the codec refuses: malformed wire input.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { generate, OUT, schemaOf } from "../../scripts/gen-csi-wire.ts";
import { protobufjsCodecs, protobufjsRoot } from "../../src/csi/protobufjs-package.ts";
import { WireError, wireCodecs, type FieldRow } from "../../src/csi/wire.ts";
import { CSI_WIRE } from "../../src/csi/wire-csi.ts";
import { startIdentityServer } from "../helpers/identity-server.ts";

const ours = wireCodecs(CSI_WIRE);
const theirs = protobufjsCodecs(protobufjsRoot());
const TYPES = Object.keys(CSI_WIRE.messages);
const ROUNDS = 150;

/** mulberry32: the same values on every run, so a failure can be replayed. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
let rand = rng(16);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;
const chance = (p: number) => rand() < p;

const CHARS = ["a", "Z", "0", "-", "/", " ", "=", "é", "ß", "€", "日", "本", "😀", "\n", "\u0000", '"'];
const randomString = () => (chance(0.15) ? "" : Array.from({ length: int(40) }, () => pick(CHARS)).join(""));
const INT64S = [0, 1, -1, 127, 128, 2 ** 31, -(2 ** 31) - 1, 2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1), 1e15, -5e14];
const randomInt64 = () => (chance(0.5) ? pick(INT64S) : Math.floor((rand() - 0.5) * 2 * Number.MAX_SAFE_INTEGER));
const INT32S = [0, 1, -1, 127, 128, 2 ** 31 - 1, -(2 ** 31), 300];
const randomInt32 = () => (chance(0.5) ? pick(INT32S) : Math.floor((rand() - 0.5) * 2 ** 32) | 0);

function randomScalar(kind: string, ref: string | undefined): unknown {
  switch (kind) {
    case "string":
      return randomString();
    case "bool":
      return chance(0.5);
    case "int32":
      return randomInt32();
    case "int64":
      return randomInt64();
    case "enum":
      return pick(Object.keys(CSI_WIRE.enums[ref!]!));
  }
  throw new Error(`no generator for ${kind}`);
}

function randomMessage(type: string, depth = 0): Record<string, unknown> {
  const rows = CSI_WIRE.messages[type]!;
  const o: Record<string, unknown> = {};
  const oneofChosen = new Map<string, FieldRow>();
  for (const name of new Set(rows.filter((r) => r.oneof).map((r) => r.oneof!)))
    if (chance(0.7)) oneofChosen.set(name, pick(rows.filter((r) => r.oneof === name)));
  for (const r of rows) {
    if (r.oneof ? oneofChosen.get(r.oneof) !== r : chance(0.3)) continue;
    const one = () => (r.kind === "message" ? randomMessage(r.ref!, depth + 1) : randomScalar(r.kind, r.ref));
    if (r.kind === "map") {
      const m: Record<string, unknown> = {};
      for (let i = int(4); i > 0; i--) m[randomString()] = randomScalar(r.value!, r.ref);
      o[r.name] = m;
    } else if (r.repeated) o[r.name] = Array.from({ length: int(4) }, one);
    else o[r.name] = one();
  }
  return o;
}

/** Fields a newer peer might send: numbers the message does not use, every wire type. */
function unknownFields(type: string): number[] {
  const used = new Set(CSI_WIRE.messages[type]!.map((r) => r.no));
  const out: number[] = [];
  for (let i = int(3); i > 0; i--) {
    let no = 1 + int(40);
    while (used.has(no)) no++;
    const wt = pick([0, 1, 2, 5, 3]);
    const tag = (n: number, w: number) => {
      for (let v = (n << 3) | w; ; v >>>= 7) {
        if (v < 0x80) return out.push(v);
        out.push((v & 0x7f) | 0x80);
      }
    };
    tag(no, wt);
    if (wt === 0) out.push(0xff, 0xff, 0xff, 0xff, 0x0f);
    else if (wt === 1) out.push(1, 2, 3, 4, 5, 6, 7, 8);
    else if (wt === 5) out.push(1, 2, 3, 4);
    else if (wt === 2) out.push(3, 0x61, 0x62, 0x63);
    else {
      tag(no + 100, 0);
      out.push(42);
      tag(no, 4);
    }
  }
  return out;
}

test("src/csi/wire-csi.ts is what scripts/gen-csi-wire.ts makes of csi.proto (bun scripts/gen-csi-wire.ts)", async () => {
  expect(readFileSync(OUT, "utf8")).toBe(await generate());
});

test("the tables cover every message, enum and RPC of csi.proto", () => {
  expect(TYPES.length).toBeGreaterThan(70);
  expect(Object.keys(CSI_WIRE.services).sort()).toEqual(["csi.v1.Controller", "csi.v1.Identity", "csi.v1.Node"]);
  expect(Object.keys(CSI_WIRE.services["csi.v1.Node"]!)).toContain("NodeStageVolume");
  expect(CSI_WIRE.messages["csi.v1.VolumeCapability"]!.filter((r) => r.oneof === "access_type").length).toBe(2);
});

test("the generator refuses what the codec does not implement, naming the field", () => {
  expect(() => schemaOf('syntax = "proto3"; package t; message M { bytes data = 3; }')).toThrow(
    /t\.M\.data: type bytes/,
  );
  expect(() => schemaOf('syntax = "proto3"; package t; message M { repeated int64 ns = 1; }')).toThrow(
    /t\.M\.ns: repeated int64/,
  );
  expect(() => schemaOf('syntax = "proto3"; package t; message M { map<int32, string> m = 1; }')).toThrow(
    /t\.M\.m: map key type int32/,
  );
});

describe("same as protobufjs on every CSI message", () => {
  test.each(TYPES)("%s: encode gives the same bytes, decode the same object", (type) => {
    rand = rng([...type].reduce((h, c) => Math.imul(h, 31) + c.charCodeAt(0), 7));
    const a = ours(type);
    const b = theirs(type);
    const empty = new Uint8Array(0);
    expect(a.decode(empty)).toStrictEqual(b.decode(empty));
    expect(Buffer.from(a.encode({}))).toEqual(Buffer.from(b.encode({})));
    for (let i = 0; i < ROUNDS; i++) {
      const value = randomMessage(type);
      const bytes = b.encode(value);
      expect(Buffer.from(a.encode(value))).toEqual(Buffer.from(bytes));
      expect(a.decode(bytes)).toStrictEqual(b.decode(bytes));
      const withUnknown = Uint8Array.from([...unknownFields(type), ...bytes, ...unknownFields(type)]);
      expect(a.decode(withUnknown)).toStrictEqual(b.decode(withUnknown));
    }
  });
});

describe("decoded shape (what the services read)", () => {
  const cap = ours("csi.v1.VolumeCapability");
  test("defaults filled, oneof member and name set, nested message defaults too", () => {
    const bytes = cap.encode({ mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" } });
    expect(cap.decode(bytes)).toStrictEqual({
      mount: { fs_type: "ext4", mount_flags: [], volume_mount_group: "" },
      access_type: "mount",
      access_mode: { mode: "SINGLE_NODE_WRITER" },
    });
    expect(cap.decode(new Uint8Array(0))).toStrictEqual({ access_mode: null });
  });
  test("an enum number the proto does not name stays a number", () => {
    expect(ours("csi.v1.VolumeCapability.AccessMode").decode(Uint8Array.of(0x08, 0x63))).toStrictEqual({ mode: 99 });
  });
  test("the last oneof member on the wire wins", () => {
    const both = Uint8Array.of(0x0a, 0x00, 0x12, 0x00); // block {} then mount {}
    expect(cap.decode(both)).toMatchObject({ access_type: "mount", mount: { fs_type: "" } });
    expect(cap.decode(both)).not.toHaveProperty("block");
  });
  test("a map key named __proto__ is data, not the prototype", () => {
    const req = ours("csi.v1.NodeStageVolumeRequest");
    const o = req.decode(req.encode({ volume_context: { ["__proto__"]: "x", a: "b" } })) as {
      volume_context: Record<string, string>;
    };
    expect(Object.getPrototypeOf(o.volume_context)).toBe(Object.prototype);
    expect(Object.keys(o.volume_context)).toEqual(["__proto__", "a"]);
    expect(Object.getOwnPropertyDescriptor(o.volume_context, "__proto__")?.value).toBe("x");
  });
  test("int64 across the safe range, negatives included", () => {
    const c = ours("csi.v1.CapacityRange");
    for (const n of [0, -1, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 32, -(2 ** 32) - 7])
      expect(c.decode(c.encode({ required_bytes: n }))).toStrictEqual({ required_bytes: n, limit_bytes: 0 });
    expect(c.decode(c.encode({ required_bytes: "-9223372036854775808" }))).toMatchObject({
      required_bytes: -(2 ** 63),
    });
  });
});

describe("malformed input is refused with a clear error", () => {
  const req = ours("csi.v1.NodeStageVolumeRequest"); // 1: volume_id string, 4: volume_capability message
  const cases: [string, number[], RegExp][] = [
    ["truncated varint (tag)", [0x80], /truncated varint at byte 1 of 1/],
    ["truncated varint (length)", [0x0a, 0xff], /truncated varint/],
    ["length past the end", [0x0a, 0x05, 0x61], /length 5 past the end/],
    ["nested length past its message", [0x22, 0x02, 0x0a, 0x05, 0x61, 0x61, 0x61, 0x61, 0x61], /length 5 past the end/],
    [
      "wrong wire type for a known field",
      [0x08, 0x01],
      /NodeStageVolumeRequest\.volume_id \(field 1\) has wire type 0, expected 2/,
    ],
    ["wire type 7 (unknown field)", [0x7f], /wire type 7 \(field 15\)/],
    ["field number 0", [0x00, 0x01], /field number 0/],
    ["varint over 10 bytes", [0x78, ...Array(11).fill(0xff)], /varint longer than 10 bytes/],
    ["unknown group never ended", [0x7b, 0x08, 0x01], /group 15 without its end/],
    ["truncated fixed64", [0x79, 1, 2, 3], /truncated 64-bit field 15/],
    ["groups nested without bound", Array(70).fill(0x7b), /groups nested deeper than 64/],
  ];
  test.each(cases)("%s", (_what, bytes, message) => {
    expect(() => req.decode(Uint8Array.from(bytes))).toThrow(WireError);
    expect(() => req.decode(Uint8Array.from(bytes))).toThrow(message);
  });
});

describe("encoding refuses values that have no wire form, naming the field", () => {
  const res = ours("csi.v1.NodeGetVolumeStatsResponse");
  test.each([
    ["an enum name the proto lacks", { usage: [{ unit: "LITRES" }] }, /usage\[0\]\.unit: "LITRES" is not a value of/],
    ["a fractional int64", { usage: [{ total: 1.5 }] }, /usage\[0\]\.total: a 64-bit integer expected, got 1\.5/],
    ["an int64 past 64 bits", { usage: [{ total: 2 ** 64 }] }, /usage\[0\]\.total: a 64-bit integer expected/],
    ["a list that is not an array", { usage: {} }, /NodeGetVolumeStatsResponse\.usage: array expected, got object/],
    ["a message that is not an object", { volume_condition: "bad" }, /volume_condition: object expected, got string/],
  ] as const)("%s", (_name, value, message) => {
    expect(() => res.encode(value)).toThrow(WireError);
    expect(() => res.encode(value)).toThrow(message);
  });
});

test("over gRPC: a request that does not decode is refused (INTERNAL) and the driver log says why", async () => {
  const dir = mkdtempSync("/tmp/rds-csi-wire-");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const { server, cap } = await startIdentityServer(`unix://${dir}/csi.sock`);
  // A client that sends raw bytes: what a broken or hostile peer puts on the socket.
  const raw = new grpc.Client(`unix:${dir}/csi.sock`, grpc.credentials.createInsecure());
  const call = (bytes: number[]) =>
    new Promise<{ code: number; details?: string; ok?: Buffer }>((resolve) =>
      raw.makeUnaryRequest(
        "/csi.v1.Identity/GetPluginInfo",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(bytes),
        { deadline: Date.now() + 5000 },
        (err, ok) => resolve(err ? { code: err.code, details: err.details } : { code: 0, ok: ok! }),
      ),
    );
  try {
    expect(await call([0x0a, 0x05, 0x61])).toEqual({
      code: grpc.status.INTERNAL,
      details: "Error deserializing request",
    });
    expect(cap.lines()).toContainEqual(
      expect.objectContaining({
        op: "GetPluginInfo",
        bytes: 3,
        msg_detail: "malformed protobuf: length 5 past the end of the message at byte 2 of 3",
      }),
    );
    // The same server still answers a well-formed request (an unknown field in it is skipped).
    const ok = await call([0x78, 0x01]);
    expect(ok.code).toBe(0);
    expect(wireCodecs(CSI_WIRE)("csi.v1.GetPluginInfoResponse").decode(ok.ok!)).toMatchObject({ name: "d" });
  } finally {
    raw.close();
    await server.close();
  }
});
