/**
 * The CSI services encoded and decoded by protobufjs from csi.proto, for the test client: the e2e
 * and gRPC tests then hold the driver's own codec (src/csi/wire.ts) to an independent
 * implementation on every call. Never loaded by a mode (protobufjs is a dev dependency; see
 * test/modes/loading.test.ts).
 */
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
import type { MessageCodec } from "./wire.ts";
import type { ServiceName } from "./proto.ts";
// Embedded as text: a path-based load would fail inside a compiled binary.
import protoText from "./csi.proto" with { type: "text" };

/**
 * What the services received before src/csi/wire.ts, and what it reproduces: snake_case fields
 * (kept at parse), int64 as numbers, enum names, defaults filled in, the set member of a oneof named.
 */
export const DECODE_OPTIONS: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

export function protobufjsRoot(): protobuf.Root {
  const root = protobuf.parse(protoText as unknown as string, { keepCase: true }).root;
  root.resolveAll();
  return root;
}

/** A codec with protobufjs semantics: fromObject → encode, decode → toObject(DECODE_OPTIONS). */
export function protobufjsCodecs(root: protobuf.Root): (typeName: string) => MessageCodec {
  return (typeName) => {
    const t = root.lookupType(typeName);
    return {
      name: typeName,
      encode: (o) => t.encode(t.fromObject(o as Record<string, unknown>)).finish(),
      decode: (b) => t.toObject(t.decode(b), DECODE_OPTIONS),
    };
  };
}

export type Services = Record<ServiceName, grpc.ServiceClientConstructor>;
let cached: Services | undefined;

const toBuffer = (u8: Uint8Array) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);

/** grpc-js client constructors for the CSI services, straight from protobufjs reflection. */
export function protobufjsPackage(): Services {
  if (!cached) {
    const root = protobufjsRoot();
    const codec = protobufjsCodecs(root);
    const make = (name: ServiceName) => {
      const service = root.lookupService(`csi.v1.${name}`);
      const def: Record<string, grpc.MethodDefinition<object, object>> = {};
      for (const m of service.methodsArray) {
        const req = codec(m.resolvedRequestType!.fullName.slice(1));
        const res = codec(m.resolvedResponseType!.fullName.slice(1));
        def[m.name] = {
          path: `/csi.v1.${name}/${m.name}`,
          requestStream: false,
          responseStream: false,
          requestSerialize: (o: object) => toBuffer(req.encode(o)),
          requestDeserialize: (b: Buffer) => req.decode(b),
          responseSerialize: (o: object) => toBuffer(res.encode(o)),
          responseDeserialize: (b: Buffer) => res.decode(b),
          originalName: m.name[0]!.toLowerCase() + m.name.slice(1),
        };
      }
      return grpc.makeGenericClientConstructor(def, name);
    };
    cached = { Identity: make("Identity"), Controller: make("Controller"), Node: make("Node") };
  }
  return cached;
}
