import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, statSync, writeFileSync, existsSync } from "node:fs";
import { csiClient } from "../../src/csi/client.ts";
import { identityHandlers } from "../../src/csi/identity.ts";
import { startCsiServer, type CsiServer } from "../../src/csi/server.ts";
import { alreadyExists, invalidArgument } from "../../src/runtime/errors.ts";
import { createMetrics } from "../../src/runtime/metrics.ts";
import { createShutdownCoordinator } from "../../src/runtime/shutdown.ts";
import { captureLogger } from "../helpers/log-capture.ts";

const dir = mkdtempSync("/tmp/rds-csi-server-");
const servers: CsiServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

async function start(name: string, node: Record<string, (req: any) => Promise<unknown>> = {}, maxInFlight?: number) {
  const cap = captureLogger();
  const metrics = createMetrics();
  const shutdown = createShutdownCoordinator({ graceMs: 2000, log: cap.log });
  const endpoint = `unix://${dir}/${name}.sock`;
  const server = await startCsiServer({
    endpoint,
    handlers: {
      Identity: identityHandlers({
        driverName: "rds.csi.srvlab.io",
        version: "9.9.9",
        pluginCapabilities: [],
        probe: async () => ({ ready: true }),
      }),
      Node: node,
    },
    shutdown,
    log: cap.log,
    metrics,
    ...(maxInFlight ? { maxInFlight } : {}),
  });
  servers.push(server);
  return { server, client: csiClient(endpoint), cap, metrics, shutdown, socket: `${dir}/${name}.sock` };
}

describe("CSI server and RPC wrapper", () => {
  test("identity over a unix socket with mode 0600", async () => {
    const { client, socket } = await start("identity");
    expect(await client.identity.GetPluginInfo({})).toMatchObject({
      name: "rds.csi.srvlab.io",
      vendor_version: "9.9.9",
    });
    expect(await client.identity.Probe({})).toEqual({ ready: { value: true } });
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    client.close();
  });

  test("domain errors map to their codes, validation names the field, unknown errors become INTERNAL without details", async () => {
    const { client, cap, metrics } = await start("errors", {
      NodeStageVolume: async () => {
        throw invalidArgument("volume_capability", "required");
      },
      NodePublishVolume: async () => {
        throw alreadyExists("published with another capability");
      },
      NodeUnstageVolume: async () => {
        throw new TypeError("secret internal detail at /src/x.ts:12");
      },
    });
    expect(await client.node.NodeStageVolume({ volume_id: "v" }).catch((e) => [e.code, e.details])).toEqual([
      3,
      "volume_capability: required",
    ]);
    expect(await client.node.NodePublishVolume({ volume_id: "v" }).catch((e) => e.code)).toBe(6);
    const internal = await client.node.NodeUnstageVolume({ volume_id: "v" }).catch((e) => e);
    expect(internal.code).toBe(13);
    expect(internal.details).not.toContain("secret internal detail");
    expect(cap.text()).toContain("secret internal detail");
    expect(await client.node.NodeGetInfo({}).catch((e) => e.code)).toBe(12);
    const exposition = await metrics.registry.metrics();
    expect(exposition).toMatch(
      /rds_csi_rpc_duration_seconds_count\{method="NodeStageVolume",code="INVALID_ARGUMENT"\} 1/,
    );
    client.close();
  });

  test("while draining, new RPCs get UNAVAILABLE and the in-flight one completes", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { client, shutdown } = await start("drain", {
      NodeStageVolume: async () => {
        await gate;
        return {};
      },
      NodeUnstageVolume: async () => ({}),
    });
    const inFlight = client.node.NodeStageVolume({ volume_id: "slow" });
    await Bun.sleep(50);
    const done = shutdown.shutdown("test");
    const refused = await client.node
      .NodeUnstageVolume({ volume_id: "other" }, { deadlineMs: 3000 })
      .catch((e) => e.code);
    expect(refused).toBe(14);
    release();
    // Awaited directly: bun's .resolves matcher mishandles the client's promise here.
    expect(await inFlight.catch((e) => e)).toEqual({});
    expect(await done).toBe(0);
    client.close();
  });

  test("a stale socket is replaced; a regular file at the endpoint is refused, not removed", async () => {
    const first = await start("stale");
    await first.server.close();
    // Simulate a crash: a dead socket file left behind.
    const net = await import("node:net");
    const stalePath = `${dir}/stale2.sock`;
    const srv = net.createServer().listen(stalePath);
    await new Promise((r) => srv.once("listening", r));
    (srv as any)._handle?.close?.();
    expect(existsSync(stalePath)).toBe(true);
    const again = await start("stale2");
    expect(await again.client.identity.GetPluginInfo({})).toMatchObject({ name: "rds.csi.srvlab.io" });
    again.client.close();

    writeFileSync(`${dir}/notasocket.sock`, "precious");
    const cap = captureLogger();
    await expect(
      startCsiServer({
        endpoint: `unix://${dir}/notasocket.sock`,
        handlers: { Identity: {} },
        shutdown: createShutdownCoordinator({ graceMs: 10, log: cap.log }),
        log: cap.log,
        metrics: createMetrics(),
      }),
    ).rejects.toThrow(/not a socket/);
    expect(await Bun.file(`${dir}/notasocket.sock`).text()).toBe("precious");
  });

  test("at most maxInFlight RPCs of a service run at once; the next get RESOURCE_EXHAUSTED, and room comes back", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    const { client } = await start(
      "shed",
      {
        NodeGetCapabilities: async () => {
          started++;
          await gate;
          return { capabilities: [] };
        },
      },
      2,
    );
    const codes = Array.from({ length: 5 }, () =>
      client.node.NodeGetCapabilities({}).then(
        () => 0,
        (e: { code: number }) => e.code,
      ),
    );
    while (started < 2) await Bun.sleep(5);
    await Bun.sleep(50);
    // Identity has its own, larger room: a Probe still answers while Node is full.
    expect(await client.identity.Probe({})).toEqual({ ready: { value: true } });
    release();
    const got = await Promise.all(codes);
    expect(got.filter((c) => c === 0).length).toBe(2);
    expect(got.filter((c) => c === 8).length).toBe(3);
    expect(started).toBe(2);
    expect(await client.node.NodeGetCapabilities({})).toEqual({ capabilities: [] });
    client.close();
  });
});
