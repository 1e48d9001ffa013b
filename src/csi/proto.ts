import { wireCodecs, type MessageCodec } from "./wire.ts";
import { CSI_WIRE } from "./wire-csi.ts";

export type ServiceName = "Identity" | "Controller" | "Node";

export interface CsiMethod {
  service: ServiceName;
  name: string;
  /** HTTP/2 path of the RPC: /csi.v1.Node/NodeStageVolume. */
  path: string;
  request: MessageCodec;
  response: MessageCodec;
}

let cached: Map<ServiceName, CsiMethod[]> | undefined;

/**
 * The CSI RPCs of each service with their codecs, from the generated wire tables (src/csi/wire-csi.ts,
 * from csi.proto): no .proto is parsed and protobufjs is not loaded at run time.
 */
export function csiMethods(): Map<ServiceName, CsiMethod[]> {
  if (!cached) {
    const codec = wireCodecs(CSI_WIRE);
    cached = new Map();
    for (const service of ["Identity", "Controller", "Node"] as const) {
      const methods = CSI_WIRE.services[`csi.v1.${service}`];
      if (!methods) throw new Error(`no service csi.v1.${service} in the CSI schema`);
      cached.set(
        service,
        Object.entries(methods).map(([name, [req, res]]) => ({
          service,
          name,
          path: `/csi.v1.${service}/${name}`,
          request: codec(req),
          response: codec(res),
        })),
      );
    }
  }
  return cached;
}

/** A CSI endpoint (unix:///path, unix:/path, tcp://host:port) as a gRPC address and, for unix, its path. */
export function grpcAddress(endpoint: string): { address: string; socketPath?: string } {
  if (endpoint.startsWith("unix:")) {
    const path = endpoint.replace(/^unix:(\/\/)?/, "");
    return { address: `unix:${path}`, socketPath: path };
  }
  return { address: endpoint.replace(/^tcp:\/\//, "") };
}
