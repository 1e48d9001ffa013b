import * as grpc from "@grpc/grpc-js";
import { grpcAddress } from "./proto.ts";
import { protobufjsPackage } from "./protobufjs-package.ts";

type Call = (req?: unknown, opts?: { deadlineMs?: number }) => Promise<any>;

type RpcName =
  | "GetPluginInfo"
  | "GetPluginCapabilities"
  | "Probe"
  | "CreateVolume"
  | "DeleteVolume"
  | "ControllerPublishVolume"
  | "ControllerUnpublishVolume"
  | "ValidateVolumeCapabilities"
  | "ListVolumes"
  | "GetCapacity"
  | "ControllerGetCapabilities"
  | "CreateSnapshot"
  | "DeleteSnapshot"
  | "ListSnapshots"
  | "ControllerExpandVolume"
  | "ControllerGetVolume"
  | "ControllerModifyVolume"
  | "NodeStageVolume"
  | "NodeUnstageVolume"
  | "NodePublishVolume"
  | "NodeUnpublishVolume"
  | "NodeGetVolumeStats"
  | "NodeExpandVolume"
  | "NodeGetCapabilities"
  | "NodeGetInfo";

export type ServiceClient = Record<RpcName, Call>;

export interface CsiClient {
  identity: ServiceClient;
  controller: ServiceClient;
  node: ServiceClient;
  close(): void;
}

/**
 * A promise-returning CSI client (tests, benchmarks, the demo). Errors carry `.code` (gRPC status).
 * It encodes with protobufjs, not the driver's codec: every call through it checks src/csi/wire.ts
 * against an independent implementation.
 */
export function csiClient(endpoint: string, opts: { defaultDeadlineMs?: number } = {}): CsiClient {
  const pkg = protobufjsPackage();
  const { address } = grpcAddress(endpoint);
  const clients: grpc.Client[] = [];
  const make = (Ctor: grpc.ServiceClientConstructor): ServiceClient => {
    const c = new Ctor(address, grpc.credentials.createInsecure());
    clients.push(c);
    return new Proxy({} as ServiceClient, {
      get:
        (_t, method: string) =>
        (req: unknown = {}, o: { deadlineMs?: number } = {}) =>
          new Promise((resolve, reject) => {
            const fn = (c as any)[method];
            if (typeof fn !== "function") return reject(new Error(`no such RPC ${method}`));
            const deadline = new Date(Date.now() + (o.deadlineMs ?? opts.defaultDeadlineMs ?? 60_000));
            fn.call(c, req, { deadline }, (err: grpc.ServiceError | null, res: unknown) =>
              err ? reject(err) : resolve(res),
            );
          }),
    });
  };
  return {
    identity: make(pkg.Identity),
    controller: make(pkg.Controller),
    node: make(pkg.Node),
    close: () => clients.forEach((c) => c.close()),
  };
}
