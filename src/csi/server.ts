import * as grpc from "@grpc/grpc-js";
import { unlinkSync } from "node:fs";
import { DomainError, errorMessage, isDomainError } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import type { Metrics } from "../runtime/metric-sink.ts";
import type { ShutdownCoordinator } from "../runtime/shutdown.ts";
import { csiPackage, grpcAddress } from "./proto.ts";
import { checkRequestBounds } from "./request-bounds.ts";
import { bindPrivateSocket } from "../runtime/private-socket.ts";
import { STATUS_OF_KIND, statusName } from "./status.ts";

export interface RpcContext {
  log: Logger;
  method: string;
  /** Aborted when the client cancels the call. */
  signal: AbortSignal;
}

// Requests arrive as loosely typed decoded protobuf objects; each service validates its own.
export type RpcHandler = (req: any, ctx: RpcContext) => Promise<unknown>;
export type Handlers = Record<string, RpcHandler>;

export interface CsiServerOptions {
  endpoint: string;
  socketMode?: number;
  handlers: { Identity: Handlers; Controller?: Handlers; Node?: Handlers };
  shutdown: ShutdownCoordinator;
  log: Logger;
  metrics: Metrics;
  /** Identity RPCs are cheap and must keep answering while heavy work runs: not tracked for drain. */
  untracked?: ReadonlySet<string>;
  /**
   * Most RPCs of one service running at once; beyond it a call is refused with RESOURCE_EXHAUSTED
   * (the CO retries with backoff) instead of queueing work and memory without bound.
   */
  maxInFlight?: number;
  /** Allow the socket's directory to be writable by others (off: refused, another user could swap the socket). */
  allowSharedSocketDir?: boolean;
}

export const DEFAULT_MAX_IN_FLIGHT = 64;
/** Identity calls are answered from memory; a flood of them is allowed more room than real work. */
const IDENTITY_IN_FLIGHT_FACTOR = 4;

export interface CsiServer {
  address: string;
  close(): Promise<void>;
}

const DEFAULT_UNTRACKED = new Set([
  "GetPluginInfo",
  "GetPluginCapabilities",
  "Probe",
  "NodeGetCapabilities",
  "ControllerGetCapabilities",
  "NodeGetInfo",
]);

/** Which resource an RPC is about, for logs and the in-flight list. */
function keyOf(req: any): string {
  return req?.volume_id || req?.name || req?.snapshot_id || req?.source_volume_id || "";
}

function toServiceError(e: unknown, log: Logger, method: string): grpc.ServiceError {
  if (isDomainError(e)) {
    return Object.assign(new Error(e.message), {
      code: STATUS_OF_KIND[e.kind],
      details: e.message,
      metadata: new grpc.Metadata(),
    });
  }
  // Unknown failures: full detail in our log, a plain message to the client (no stack traces across the wire).
  log.error({ err: e, method }, "unexpected error in RPC");
  return Object.assign(new Error("internal error"), {
    code: grpc.status.INTERNAL,
    details: `internal error in ${method}; see the driver log`,
    metadata: new grpc.Metadata(),
  });
}

function wrap(
  method: string,
  handler: RpcHandler,
  opts: CsiServerOptions,
  load: { inFlight: number; max: number },
): grpc.handleUnaryCall<any, any> {
  const untracked = opts.untracked ?? DEFAULT_UNTRACKED;
  return (call, callback) => {
    const started = performance.now();
    // Sizes first: nothing below (a log line, a lock key, a path) may see a field of unbounded size.
    try {
      checkRequestBounds(call.request);
    } catch (e) {
      const err = toServiceError(e, opts.log, method);
      opts.metrics.rpcDuration.observe({ method, code: statusName(err.code) }, (performance.now() - started) / 1000);
      opts.log.info({ op: method, code: statusName(err.code), msg_detail: err.details }, "rpc refused");
      callback(err);
      return;
    }
    if (load.inFlight >= load.max) {
      opts.metrics.rpcDuration.observe({ method, code: "RESOURCE_EXHAUSTED" }, 0);
      callback(
        toServiceError(
          new DomainError("resource-exhausted", `${load.max} calls are already running; retry later`),
          opts.log,
          method,
        ),
      );
      return;
    }
    load.inFlight++;
    const key = keyOf(call.request);
    const log = opts.log.child({
      op: method,
      ...(call.request?.volume_id ? { volume_id: call.request.volume_id } : {}),
    });
    const abort = new AbortController();
    call.on("cancelled", () => abort.abort(new DomainError("aborted", "client cancelled the call")));
    const ctx: RpcContext = { log, method, signal: abort.signal };
    opts.metrics.rpcInFlight.inc({ method });
    const run = () => handler(call.request, ctx);
    const work = untracked.has(method)
      ? opts.shutdown.draining
        ? Promise.reject(new DomainError("unavailable", "shutting down"))
        : run()
      : opts.shutdown.track(method, key, run);
    work.then(
      (res) => {
        finish(grpc.status.OK);
        callback(null, res ?? {});
      },
      (e) => {
        const err = toServiceError(e, log, method);
        finish(err.code);
        if (err.code !== grpc.status.INTERNAL)
          log.info({ code: statusName(err.code), msg_detail: err.details }, "rpc failed");
        callback(err);
      },
    );
    function finish(code: number) {
      load.inFlight--;
      const seconds = (performance.now() - started) / 1000;
      opts.metrics.rpcInFlight.dec({ method });
      opts.metrics.rpcDuration.observe({ method, code: statusName(code) }, seconds);
      log.debug({ code: statusName(code), duration_ms: Math.round(seconds * 1000) }, "rpc done");
    }
  };
}

/**
 * grpc-js answers a request it cannot decode with INTERNAL "Error deserializing request" and logs
 * nothing: our log says what was wrong with it (src/csi/wire.ts names the byte and the field).
 */
function logDecodeErrors(def: grpc.ServiceDefinition, log: Logger): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [method, d] of Object.entries(def)) {
    const decode = d.requestDeserialize;
    out[method] = {
      ...d,
      requestDeserialize: (b: Buffer) => {
        try {
          return decode(b);
        } catch (e) {
          log.warn(
            { op: method, bytes: b.length, msg_detail: errorMessage(e) },
            "rpc refused: request does not decode",
          );
          throw e;
        }
      },
    };
  }
  return out;
}

export async function startCsiServer(opts: CsiServerOptions): Promise<CsiServer> {
  const pkg = csiPackage();
  // Streams beyond the limit wait in the client's HTTP/2 queue instead of arriving all at once.
  const server = new grpc.Server({
    "grpc.max_receive_message_length": 4 * 1024 * 1024,
    "grpc.max_concurrent_streams": 256,
  });
  const max = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  for (const [service, handlers] of Object.entries(opts.handlers)) {
    if (!handlers) continue;
    const load = { inFlight: 0, max: service === "Identity" ? max * IDENTITY_IN_FLIGHT_FACTOR : max };
    const def = logDecodeErrors(pkg[service as "Identity" | "Controller" | "Node"].service, opts.log);
    const impl: grpc.UntypedServiceImplementation = {};
    for (const method of Object.keys(def)) {
      const h = handlers[method];
      impl[method] = h
        ? wrap(method, h, opts, load)
        : wrap(
            method,
            async () => {
              throw new DomainError("unimplemented", `${method} is not implemented by this driver`);
            },
            opts,
            load,
          );
    }
    server.addService(def, impl);
  }
  const { address, socketPath } = grpcAddress(opts.endpoint);
  if (socketPath) {
    await bindPrivateSocket(
      socketPath,
      opts.socketMode ?? 0o600,
      { allowSharedDir: opts.allowSharedSocketDir ?? false },
      (tempPath) =>
        new Promise<number>((resolve, reject) =>
          server.bindAsync(`unix://${tempPath}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
            err ? reject(err) : resolve(port),
          ),
        ),
    );
  } else {
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
  }
  opts.log.info(
    { endpoint: opts.endpoint, services: Object.keys(opts.handlers).filter((k) => opts.handlers[k as "Identity"]) },
    "CSI server listening",
  );

  let closed = false;
  return {
    address,
    async close() {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2_000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      if (socketPath) {
        try {
          unlinkSync(socketPath);
        } catch {
          /* already gone */
        }
      }
    },
  };
}
