import * as grpc from "@grpc/grpc-js";
import { wireCodecs, type MessageCodec } from "./wire.ts";
import { CSI_WIRE } from "./wire-csi.ts";

export type ServiceName = "Identity" | "Controller" | "Node";
export type Services = Record<ServiceName, grpc.ServiceClientConstructor>;
/** Service full name → method → [request type, response type]. */
export type ServiceTable = Record<string, Record<string, readonly [string, string]>>;

const toBuffer = (u8: Uint8Array) => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);

/**
 * grpc-js client constructors (each with its `.service` definition for a server) for the CSI
 * services, encoding and decoding with `codec`. grpc-js takes any serialize/deserialize functions;
 * the driver's are src/csi/wire.ts, the test client's protobufjs (src/csi/protobufjs-package.ts).
 */
export function servicesFrom(services: ServiceTable, codec: (typeName: string) => MessageCodec): Services {
  const make = (name: ServiceName) => {
    const fullName = `csi.v1.${name}`;
    const methods = services[fullName];
    if (!methods) throw new Error(`no service ${fullName} in the CSI schema`);
    const def: Record<string, grpc.MethodDefinition<object, object>> = {};
    for (const [method, [reqType, resType]] of Object.entries(methods)) {
      const req = codec(reqType);
      const res = codec(resType);
      def[method] = {
        path: `/${fullName}/${method}`,
        requestStream: false,
        responseStream: false,
        requestSerialize: (o: object) => toBuffer(req.encode(o)),
        requestDeserialize: (b: Buffer) => req.decode(b),
        responseSerialize: (o: object) => toBuffer(res.encode(o)),
        responseDeserialize: (b: Buffer) => res.decode(b),
        originalName: method[0]!.toLowerCase() + method.slice(1),
      };
    }
    return grpc.makeGenericClientConstructor(def, name);
  };
  return { Identity: make("Identity"), Controller: make("Controller"), Node: make("Node") };
}

let cached: Services | undefined;

/**
 * The CSI services on the generated wire tables (src/csi/wire-csi.ts, from csi.proto): no .proto is
 * parsed and protobufjs is not loaded at run time, ~6 MB less in every CSI process
 * (scripts/bench-startup.ts).
 */
export function csiPackage(): Services {
  return (cached ??= servicesFrom(CSI_WIRE.services, wireCodecs(CSI_WIRE)));
}

/** grpc-js address from a CSI endpoint (unix:///path, unix:/path, tcp://host:port). */
export function grpcAddress(endpoint: string): { address: string; socketPath?: string } {
  if (endpoint.startsWith("unix:")) {
    const path = endpoint.replace(/^unix:(\/\/)?/, "");
    return { address: `unix:${path}`, socketPath: path };
  }
  return { address: endpoint.replace(/^tcp:\/\//, "") };
}
