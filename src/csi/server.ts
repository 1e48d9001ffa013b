import { unlinkSync } from "node:fs";
import { DomainError, errorMessage, isDomainError } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import type { Metrics } from "../runtime/metric-sink.ts";
import type { ShutdownCoordinator } from "../runtime/shutdown.ts";
import {
  createGrpcServer,
  Status,
  type RpcStatus,
  type UnaryCall,
  type UnaryHandler,
  type UnaryMethod,
} from "./grpc-server.ts";
import { csiMethods, grpcAddress } from "./proto.ts";
import { checkRequestBounds } from "./request-bounds.ts";
import { bindPrivateSocket } from "../runtime/private-socket.ts";
import { STATUS_OF_KIND, statusName } from "./status.ts";

import type { Handlers, RpcContext, RpcHandler } from "./handler.ts";

export type { Handlers, RpcContext, RpcHandler } from "./handler.ts";

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

/** A top-level string field of a decoded request, before any schema has looked at it ("" when absent). */
function field(req: unknown, name: string): string {
  const value = typeof req === "object" && req !== null ? (req as Record<string, unknown>)[name] : undefined;
  return typeof value === "string" ? value : "";
}

/** Which resource an RPC is about, for logs and the in-flight list. */
function keyOf(req: unknown): string {
  return field(req, "volume_id") || field(req, "name") || field(req, "snapshot_id") || field(req, "source_volume_id");
}

function toServiceError(e: unknown, log: Logger, method: string): RpcStatus {
  if (isDomainError(e)) return { code: STATUS_OF_KIND[e.kind], details: e.message };
  // Unknown failures: full detail in our log, a plain message to the client (no stack traces across the wire).
  log.error({ err: e, method }, "unexpected error in RPC");
  return { code: Status.INTERNAL, details: `internal error in ${method}; see the driver log` };
}

function wrap(
  method: string,
  handler: RpcHandler,
  opts: CsiServerOptions,
  load: { inFlight: number; max: number },
): (call: UnaryCall, callback: (err: RpcStatus | null, res?: object) => void) => void {
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
    const volumeId = field(call.request, "volume_id");
    const log = opts.log.child({ op: method, ...(volumeId ? { volume_id: volumeId } : {}) });
    const abort = new AbortController();
    call.signal.addEventListener("abort", () => abort.abort(new DomainError("aborted", "client cancelled the call")));
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
        finish(Status.OK);
        callback(null, res ?? {});
      },
      (e) => {
        const err = toServiceError(e, log, method);
        finish(err.code);
        if (err.code !== Status.INTERNAL)
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

/** The callback-style wrapper as the promise the gRPC server awaits. */
const unary =
  (f: ReturnType<typeof wrap>): UnaryHandler =>
  (call) =>
    new Promise((resolve, reject) => f(call, (err, res) => (err ? reject(err) : resolve(res!))));

export async function startCsiServer(opts: CsiServerOptions): Promise<CsiServer> {
  const max = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  const methods = new Map<string, UnaryMethod>();
  for (const [service, defs] of csiMethods()) {
    const handlers = opts.handlers[service];
    if (!handlers) continue;
    const load = { inFlight: 0, max: service === "Identity" ? max * IDENTITY_IN_FLIGHT_FACTOR : max };
    for (const m of defs) {
      const h =
        handlers[m.name] ??
        (async () => {
          throw new DomainError("unimplemented", `${m.name} is not implemented by this driver`);
        });
      methods.set(m.path, {
        decode: m.request.decode,
        encode: m.response.encode,
        handler: unary(wrap(m.name, h, opts, load)),
        onDecodeError: (e, bytes) =>
          opts.log.warn({ op: m.name, bytes, msg_detail: errorMessage(e) }, "rpc refused: request does not decode"),
      });
    }
  }
  // Streams beyond the limit wait in the client's HTTP/2 queue instead of arriving all at once.
  const server = createGrpcServer({ methods, maxReceiveBytes: 4 * 1024 * 1024, maxConcurrentStreams: 256 });
  const { address, socketPath } = grpcAddress(opts.endpoint);
  if (socketPath) {
    await bindPrivateSocket(
      socketPath,
      opts.socketMode ?? 0o600,
      { allowSharedDir: opts.allowSharedSocketDir ?? false },
      (tempPath) => server.listen(tempPath).then(() => 0),
    );
  } else {
    const at = address.lastIndexOf(":");
    await server.listen({ host: address.slice(0, at).replace(/^\[|\]$/g, ""), port: Number(address.slice(at + 1)) });
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
      await server.close(2_000);
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
