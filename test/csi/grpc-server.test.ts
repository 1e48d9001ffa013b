/**
 * src/csi/grpc-server.ts against a real grpc-js client over a unix socket: status and message in
 * trailers, grpc-timeout deadlines and RST_STREAM cancellation reaching the handler's signal, the
 * concurrent-stream limit, oversized and malformed calls, and a draining close.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { csiClient } from "../../src/csi/client.ts";
import { createGrpcServer, Status, type GrpcServer, type UnaryHandler } from "../../src/csi/grpc-server.ts";
import { startIdentityServer } from "../helpers/identity-server.ts";

const dir = mkdtempSync("/tmp/rds-csi-grpc-server-");
const servers: GrpcServer[] = [];
const clients: grpc.Client[] = [];
afterAll(async () => {
  for (const c of clients) c.close();
  for (const s of servers) await s.close(100);
  rmSync(dir, { recursive: true, force: true });
});

// Messages are plain UTF-8 text here: the transport is under test, not the codec.
const text = {
  decode: (b: Uint8Array) => Buffer.from(b).toString("utf8"),
  encode: (o: object) => Buffer.from(String(o)),
};

let n = 0;
async function serve(handlers: Record<string, UnaryHandler>, opts: { maxConcurrentStreams?: number } = {}) {
  const socket = `${dir}/s${n++}.sock`;
  const server = createGrpcServer({
    methods: new Map(Object.entries(handlers).map(([name, handler]) => [`/t.S/${name}`, { ...text, handler }])),
    maxReceiveBytes: 1024,
    maxConcurrentStreams: opts.maxConcurrentStreams ?? 100,
  });
  await server.listen(socket);
  servers.push(server);
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  clients.push(client);
  const call = (method: string, body: string, o: { deadlineMs?: number } = {}) => {
    let c!: grpc.ClientUnaryCall;
    const done = new Promise<{ code: number; details: string; body?: string }>((resolve) => {
      c = client.makeUnaryRequest(
        `/t.S/${method}`,
        (s: string) => Buffer.from(s),
        (b: Buffer) => b.toString("utf8"),
        body,
        { deadline: Date.now() + (o.deadlineMs ?? 10_000) },
        (err, res) => resolve(err ? { code: err.code, details: err.details } : { code: 0, details: "", body: res! }),
      );
    });
    return { done, cancel: () => c.cancel() };
  };
  return { server, client, call };
}

const settled = (signal: AbortSignal) =>
  new Promise<string>((resolve) =>
    signal.addEventListener("abort", () => resolve(String(signal.reason)), { once: true }),
  );

describe("unary calls from a grpc-js client", () => {
  test("a reply, and a status with a non-ASCII message in the trailers", async () => {
    const { call } = await serve({
      Echo: async ({ request }) => `echo ${request}` as unknown as object,
      Fail: async () =>
        Promise.reject({ code: Status.FAILED_PRECONDITION, details: "volume “v1” is 100% busy: ünïcode" }),
      Crash: async () => {
        throw new Error("secret detail");
      },
    });
    expect(await call("Echo", "hi").done).toEqual({ code: 0, details: "", body: "echo hi" });
    expect(await call("Echo", "").done).toEqual({ code: 0, details: "", body: "echo " });
    expect(await call("Fail", "x").done).toEqual({
      code: Status.FAILED_PRECONDITION,
      details: "volume “v1” is 100% busy: ünïcode",
    });
    expect(await call("Crash", "x").done).toEqual({ code: Status.INTERNAL, details: "internal error" });
  });

  test("a message with a lone surrogate or control characters still reaches the client", async () => {
    const { call } = await serve({
      Fail: async () => Promise.reject({ code: Status.NOT_FOUND, details: "volume \uD800x\nline 100%" }),
    });
    expect(await call("Fail", "x").done).toEqual({ code: Status.NOT_FOUND, details: "volume \uFFFDx\nline 100%" });
  });

  test("an unknown method is UNIMPLEMENTED, naming the path", async () => {
    const { call } = await serve({});
    expect(await call("Nope", "x").done).toEqual({
      code: Status.UNIMPLEMENTED,
      details: "The server does not implement /t.S/Nope",
    });
  });

  test("the client's deadline (grpc-timeout) answers DEADLINE_EXCEEDED and aborts the handler", async () => {
    let aborted!: Promise<string>;
    const { call } = await serve({
      Slow: ({ signal }) => {
        aborted = settled(signal);
        return new Promise(() => {}); // never answers by itself
      },
    });
    const t = performance.now();
    const res = await call("Slow", "x", { deadlineMs: 300 }).done;
    expect(res.code).toBe(Status.DEADLINE_EXCEEDED);
    expect(await aborted).toMatch(/deadline|cancel/);
    expect(performance.now() - t).toBeLessThan(5_000);
  });

  test("a cancelled call (RST_STREAM) aborts the handler; its late answer goes nowhere", async () => {
    let aborted!: Promise<string>;
    let finish!: () => void;
    const { call } = await serve({
      Slow: ({ signal }) => {
        aborted = settled(signal);
        return new Promise((resolve) => (finish = () => resolve("late" as unknown as object)));
      },
      Echo: async ({ request }) => request as object,
    });
    const c = call("Slow", "x");
    await Bun.sleep(100);
    c.cancel();
    expect((await c.done).code).toBe(Status.CANCELLED);
    expect(await aborted).toMatch(/cancelled/);
    finish();
    // The connection is still good for the next call.
    expect(await call("Echo", "again").done).toEqual({ code: 0, details: "", body: "again" });
  });

  test("no more calls run at once than the concurrent-stream limit; the rest wait in the client", async () => {
    let running = 0;
    let most = 0;
    const { call } = await serve(
      {
        Work: async () => {
          most = Math.max(most, ++running);
          await Bun.sleep(50);
          running--;
          return "ok" as unknown as object;
        },
      },
      { maxConcurrentStreams: 3 },
    );
    const results = await Promise.all(Array.from({ length: 12 }, () => call("Work", "x").done));
    expect(results.every((r) => r.code === 0)).toBe(true);
    expect(most).toBe(3);
  });

  test("a message over the limit is RESOURCE_EXHAUSTED; the handler never runs", async () => {
    let ran = false;
    const { call } = await serve({
      Echo: async ({ request }) => {
        ran = true;
        return request as object;
      },
    });
    const res = await call("Echo", "x".repeat(5000)).done;
    expect(res.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(ran).toBe(false);
    expect(await call("Echo", "x".repeat(1024)).done).toMatchObject({ code: 0 });
  });

  test("a request that does not decode is INTERNAL and reported to onDecodeError", async () => {
    const socket = `${dir}/decode.sock`;
    const seen: string[] = [];
    const server = createGrpcServer({
      methods: new Map([
        [
          "/t.S/Strict",
          {
            decode: () => {
              throw new Error("malformed protobuf: truncated varint");
            },
            encode: text.encode,
            handler: async () => ({}),
            onDecodeError: (e: unknown, bytes: number) => seen.push(`${(e as Error).message} (${bytes} bytes)`),
          },
        ],
      ]),
      maxReceiveBytes: 1024,
      maxConcurrentStreams: 10,
    });
    await server.listen(socket);
    servers.push(server);
    const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
    clients.push(client);
    const res = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(
        "/t.S/Strict",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x80]),
        (err) => resolve(err),
      ),
    );
    expect({ code: res?.code, details: res?.details }).toEqual({
      code: Status.INTERNAL,
      details: "Error deserializing request",
    });
    expect(seen).toEqual(["malformed protobuf: truncated varint (1 bytes)"]);
  });
});

describe("close", () => {
  test("drains: a call in flight still gets its answer, and close waits for it", async () => {
    let finish!: () => void;
    const { server, call } = await serve({
      Slow: () => new Promise((resolve) => (finish = () => resolve("done" as unknown as object))),
    });
    const c = call("Slow", "x");
    await Bun.sleep(100);
    let closed = false;
    const closing = server.close(5_000).then(() => (closed = true));
    await Bun.sleep(100);
    expect(closed).toBe(false);
    finish();
    expect(await c.done).toEqual({ code: 0, details: "", body: "done" });
    await closing;
    expect(closed).toBe(true);
  });

  test("past the grace, calls still running are cut off (the client sees UNAVAILABLE or CANCELLED)", async () => {
    const { server, call } = await serve({ Hang: () => new Promise(() => {}) });
    const c = call("Hang", "x");
    await Bun.sleep(100);
    const t = performance.now();
    await server.close(200);
    expect(performance.now() - t).toBeLessThan(2_000);
    expect([Status.UNAVAILABLE, Status.CANCELLED, Status.INTERNAL]).toContain((await c.done).code);
  });
});

test("a tcp://host:port endpoint (config allows it for tests) serves over loopback", async () => {
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const p = (probe.address() as { port: number }).port;
      probe.close(() => resolve(p));
    });
  });
  const { server } = await startIdentityServer(`tcp://127.0.0.1:${port}`);
  const client = csiClient(`tcp://127.0.0.1:${port}`);
  try {
    expect(await client.identity.GetPluginInfo({})).toEqual({ name: "d", vendor_version: "1", manifest: {} });
  } finally {
    client.close();
    await server.close();
  }
});
