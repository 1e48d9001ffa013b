/**
 * The CSI services encoded and decoded by protobufjs from csi.proto, for the test client: the e2e
 * and gRPC tests then hold the driver's own codec (src/csi/wire.ts) to an independent
 * implementation on every call. Never loaded by a mode (protobufjs is a dev dependency; see
 * test/modes/loading.test.ts).
 */
import protobuf from "protobufjs";
import type { MessageCodec } from "./wire.ts";
import { servicesFrom, type Services, type ServiceTable } from "./proto.ts";
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

let cached: Services | undefined;

export function protobufjsPackage(): Services {
  if (!cached) {
    const root = protobufjsRoot();
    const services: ServiceTable = {};
    const walk = (ns: protobuf.NamespaceBase) => {
      for (const o of ns.nestedArray) {
        if (o instanceof protobuf.Service)
          services[o.fullName.slice(1)] = Object.fromEntries(
            o.methodsArray.map((m) => [
              m.name,
              [m.resolvedRequestType!.fullName.slice(1), m.resolvedResponseType!.fullName.slice(1)],
            ]),
          );
        if (o instanceof protobuf.Namespace) walk(o);
      }
    };
    walk(root);
    cached = servicesFrom(services, protobufjsCodecs(root));
  }
  return cached;
}
