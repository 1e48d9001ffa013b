/**
 * A unary-only gRPC server on node:http2: what the CSI services need of gRPC (CSI has no streaming
 * RPCs) without grpc-js, which with its compression (node:zlib), channelz and interceptor layers
 * cost ~4 MB in every CSI process (scripts/bench-startup.ts). The protocol is the "gRPC over
 * HTTP/2" document of the grpc/grpc repository (doc/PROTOCOL-HTTP2.md): length-prefixed messages,
 * grpc-timeout deadlines, status and message in trailers (or a trailers-only response), RST_STREAM
 * as cancellation. Tested against grpc-js clients (test/csi/grpc-server.test.ts and everything
 * under test/e2e, which use one).
 */
import * as http2 from "node:http2";

/** gRPC status codes (doc/statuscodes.md of grpc/grpc). */
export enum Status {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

export interface RpcStatus {
  code: Status;
  details: string;
}

export interface UnaryCall {
  request: unknown;
  /** Aborted when the client cancels the call or its deadline passes. */
  signal: AbortSignal;
}

/** Resolves with the response message, or rejects with an RpcStatus (anything else is INTERNAL). */
export type UnaryHandler = (call: UnaryCall) => Promise<object>;

export interface UnaryMethod {
  decode(bytes: Uint8Array): unknown;
  encode(message: object): Uint8Array;
  handler: UnaryHandler;
  /** Called when a request does not decode (the client is answered INTERNAL either way). */
  onDecodeError?: (e: unknown, bytes: number) => void;
}

export interface GrpcServerOptions {
  /** HTTP/2 path ("/csi.v1.Node/NodeStageVolume") → method. */
  methods: ReadonlyMap<string, UnaryMethod>;
  maxReceiveBytes: number;
  maxConcurrentStreams: number;
}

export interface GrpcServer {
  /** A unix socket path, or a TCP host and port. */
  listen(at: string | { host: string; port: number }): Promise<void>;
  /** Stops intake; resolves when the calls in flight have answered, or after `graceMs` cuts them off. */
  close(graceMs: number): Promise<void>;
}

const isStatus = (e: unknown): e is RpcStatus =>
  typeof e === "object" && e !== null && typeof (e as RpcStatus).code === "number" && "details" in e;

// grpc-timeout: at most 8 digits and a unit (PROTOCOL-HTTP2.md "Timeout").
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/**
 * grpc-message is percent-encoded UTF-8 (PROTOCOL-HTTP2.md "Status-Message": bytes outside
 * %x20-%x7E, and "%", are encoded). Not encodeURI: it throws on a lone surrogate, and a message
 * that quotes a request field must never make the answer itself fail.
 */
export function percentEncode(text: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(text.toWellFormed())) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export function createGrpcServer(opts: GrpcServerOptions): GrpcServer {
  const server = http2.createServer({ settings: { maxConcurrentStreams: opts.maxConcurrentStreams } });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
    s.on("error", () => s.destroy());
  });
  server.on("stream", (stream, headers) => serveStream(stream as http2.ServerHttp2Stream, headers, opts));
  return {
    listen: (at) =>
      new Promise<void>((resolve, reject) => {
        const listening = () => {
          server.off("error", reject);
          resolve();
        };
        server.once("error", reject);
        if (typeof at === "string") server.listen(at, listening);
        else server.listen(at.port, at.host, listening);
      }),
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        // GOAWAY to every client: calls in flight finish, new ones go elsewhere (or wait for a restart).
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
          resolve();
        }, graceMs);
        server.close(done);
        for (const s of sessions) s.close();
      }),
  };
}

function serveStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, opts: GrpcServerOptions) {
  stream.on("error", () => {}); // a reset stream is reported through "close"; nothing to do here
  let answered = false;
  const abort = new AbortController();
  let deadline: ReturnType<typeof setTimeout> | undefined;

  const trailersOnly = (s: RpcStatus) => {
    if (answered || stream.closed || stream.destroyed) return;
    answered = true;
    clearTimeout(deadline);
    stream.respond(
      {
        ":status": 200,
        "content-type": "application/grpc+proto",
        "grpc-status": String(s.code),
        "grpc-message": percentEncode(s.details),
      },
      { endStream: true },
    );
  };
  const reply = (bytes: Uint8Array) => {
    if (answered || stream.closed || stream.destroyed) return;
    answered = true;
    clearTimeout(deadline);
    const frame = Buffer.allocUnsafe(5 + bytes.length);
    frame[0] = 0; // not compressed
    frame.writeUInt32BE(bytes.length, 1);
    frame.set(bytes, 5);
    stream.respond(
      { ":status": 200, "content-type": "application/grpc+proto", "grpc-accept-encoding": "identity" },
      { waitForTrailers: true },
    );
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "grpc-message": "" }));
    stream.end(frame);
  };
  // The client went away (RST_STREAM, connection lost) before an answer: the work is cancelled.
  stream.once("close", () => {
    clearTimeout(deadline);
    if (!answered) {
      answered = true;
      abort.abort(new Error("client cancelled the call"));
    }
  });

  const path = String(headers[":path"] ?? "");
  const method = opts.methods.get(path);
  if (headers[":method"] !== "POST" || !String(headers["content-type"] ?? "").startsWith("application/grpc")) {
    return trailersOnly({ code: Status.UNIMPLEMENTED, details: "not a gRPC request (POST, application/grpc)" });
  }
  if (!method) return trailersOnly({ code: Status.UNIMPLEMENTED, details: `The server does not implement ${path}` });

  const timeout = headers["grpc-timeout"];
  if (timeout !== undefined) {
    const m = TIMEOUT.exec(String(timeout));
    if (!m) return trailersOnly({ code: Status.INTERNAL, details: `invalid grpc-timeout ${JSON.stringify(timeout)}` });
    const ms = Number(m[1]) * UNIT_MS[m[2]!]!;
    deadline = setTimeout(
      () => {
        trailersOnly({ code: Status.DEADLINE_EXCEEDED, details: "Deadline exceeded" });
        abort.abort(new Error("the call's deadline passed"));
      },
      Math.max(0, Math.ceil(ms)),
    );
  }

  const chunks: Buffer[] = [];
  let received = 0;
  stream.on("data", (chunk: Buffer) => {
    if (answered) return;
    received += chunk.length;
    // The frame header (5 bytes) and one message: anything beyond the cap is refused unread.
    if (received > opts.maxReceiveBytes + 5) {
      trailersOnly({
        code: Status.RESOURCE_EXHAUSTED,
        details: `Received message larger than max (${received - 5} vs. ${opts.maxReceiveBytes})`,
      });
      stream.close(http2.constants.NGHTTP2_NO_ERROR); // stop the rest of its upload (RFC 9113 8.1)
      return;
    }
    chunks.push(chunk);
  });
  stream.on("end", () => {
    if (answered) return;
    const body = Buffer.concat(chunks, received);
    if (body.length < 5 || body.length !== 5 + body.readUInt32BE(1))
      return trailersOnly({
        code: Status.INTERNAL,
        details: `a unary call carries exactly one message (got ${body.length} bytes)`,
      });
    if (body[0] !== 0)
      return trailersOnly({ code: Status.UNIMPLEMENTED, details: "compressed messages are not supported" });
    const bytes = body.subarray(5);
    let request: unknown;
    try {
      request = method.decode(bytes);
    } catch (e) {
      method.onDecodeError?.(e, bytes.length);
      return trailersOnly({ code: Status.INTERNAL, details: "Error deserializing request" });
    }
    method.handler({ request, signal: abort.signal }).then(
      (res) => {
        let out: Uint8Array;
        try {
          out = method.encode(res);
        } catch (e) {
          return trailersOnly({
            code: Status.INTERNAL,
            details: `Error serializing response: ${e instanceof Error ? e.message : String(e)}`,
          });
        }
        reply(out);
      },
      (e) => trailersOnly(isStatus(e) ? e : { code: Status.INTERNAL, details: "internal error" }),
    );
  });
}
