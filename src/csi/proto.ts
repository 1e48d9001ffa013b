import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";
// Embedded as text: a path-based load would fail inside the compiled single-file binary.
import protoText from "./csi.proto" with { type: "text" };

/** Decoding options shared by server and test client: snake_case fields, int64 as numbers, enum names. */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

let cached: grpc.GrpcObject | undefined;

export function csiPackage(): { Identity: grpc.ServiceClientConstructor; Controller: grpc.ServiceClientConstructor; Node: grpc.ServiceClientConstructor } {
  if (!cached) {
    const root = protobuf.parse(protoText as unknown as string, { keepCase: true }).root;
    const def = protoLoader.fromJSON(root.toJSON(), LOADER_OPTIONS);
    cached = grpc.loadPackageDefinition(def);
  }
  const v1 = (cached["csi"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject;
  return {
    Identity: v1["Identity"] as grpc.ServiceClientConstructor,
    Controller: v1["Controller"] as grpc.ServiceClientConstructor,
    Node: v1["Node"] as grpc.ServiceClientConstructor,
  };
}

/** grpc-js address from a CSI endpoint (unix:///path, unix:/path, tcp://host:port). */
export function grpcAddress(endpoint: string): { address: string; socketPath?: string } {
  if (endpoint.startsWith("unix:")) {
    const path = endpoint.replace(/^unix:(\/\/)?/, "");
    return { address: `unix:${path}`, socketPath: path };
  }
  return { address: endpoint.replace(/^tcp:\/\//, "") };
}
