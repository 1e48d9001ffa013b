import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";
// Embedded as text: a path-based load would fail inside the compiled single-file binary.
import protoText from "./csi.proto" with { type: "text" };

/**
 * Decoding options shared by server and test client: snake_case fields (kept at parse), int64 as
 * numbers, enum names, defaults filled in, the set member of a oneof named.
 */
export const DECODE_OPTIONS: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

type Services = {
  Identity: grpc.ServiceClientConstructor;
  Controller: grpc.ServiceClientConstructor;
  Node: grpc.ServiceClientConstructor;
};
let cached: Services | undefined;

const toBuffer = (u8: Uint8Array) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);

/**
 * grpc-js service definitions straight from protobufjs reflection. @grpc/proto-loader would build
 * the same codecs but also a descriptor-proto copy of the whole file that nothing here reads; going
 * without it keeps ~5 MB out of every CSI process (scripts/bench-startup.ts).
 */
function serviceDefinition(service: protobuf.Service): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<object, object>> = {};
  service.resolveAll();
  for (const m of service.methodsArray) {
    const req = m.resolvedRequestType!;
    const res = m.resolvedResponseType!;
    def[m.name] = {
      path: `/${service.fullName.slice(1)}/${m.name}`,
      requestStream: !!m.requestStream,
      responseStream: !!m.responseStream,
      requestSerialize: (o: object) => toBuffer(req.encode(req.fromObject(o)).finish()),
      requestDeserialize: (b: Buffer) => req.toObject(req.decode(b), DECODE_OPTIONS),
      responseSerialize: (o: object) => toBuffer(res.encode(res.fromObject(o)).finish()),
      responseDeserialize: (b: Buffer) => res.toObject(res.decode(b), DECODE_OPTIONS),
      originalName: m.name[0]!.toLowerCase() + m.name.slice(1),
    };
  }
  return def;
}

export function csiPackage(): Services {
  if (!cached) {
    const root = protobuf.parse(protoText as unknown as string, { keepCase: true }).root;
    const make = (name: string) =>
      grpc.makeGenericClientConstructor(serviceDefinition(root.lookupService(`csi.v1.${name}`)), name);
    cached = { Identity: make("Identity"), Controller: make("Controller"), Node: make("Node") };
  }
  return cached;
}

/** grpc-js address from a CSI endpoint (unix:///path, unix:/path, tcp://host:port). */
export function grpcAddress(endpoint: string): { address: string; socketPath?: string } {
  if (endpoint.startsWith("unix:")) {
    const path = endpoint.replace(/^unix:(\/\/)?/, "");
    return { address: `unix:${path}`, socketPath: path };
  }
  return { address: endpoint.replace(/^tcp:\/\//, "") };
}
