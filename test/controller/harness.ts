import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { VolumeParams } from "../../src/backends/backend.ts";
import { csiClient, type CsiClient, type ServiceClient } from "../../src/csi/client.ts";
import { identityHandlers } from "../../src/csi/identity.ts";
import { startCsiServer } from "../../src/csi/server.ts";
import { createControllerProbe } from "../../src/controller/probe.ts";
import { controllerHandlers } from "../../src/controller/service.ts";
import { silentLogger, type Logger } from "../../src/runtime/log.ts";
import { createMetrics } from "../../src/runtime/metrics.ts";
import { createShutdownCoordinator } from "../../src/runtime/shutdown.ts";
import type { BackendFixture } from "../backends/harness.ts";

export const GiB = 2 ** 30;
export const DEFAULT_PARAMS: VolumeParams = {
  volumePath: "/storage-pool/metal-csi",
  nvmePort: 4420,
  ctrlLossTmo: -1,
  reconnectDelay: 5,
  keepAliveTmo: 0,
  fsType: "ext4",
};

/** The test client's services: one list of RPC names, in src/csi/client.ts. */
export type ControllerApi = ServiceClient;
export type IdentityApi = ServiceClient;

export interface ControllerFixture {
  client: CsiClient;
  ctl: ControllerApi;
  identity: IdentityApi;
  endpoint: string;
  close(): Promise<void>;
}

/** The controller service over real gRPC on a unix socket, in this process, on a given backend. */
export interface ControllerOptions {
  /** Probe's budget (default 800 ms, as in the binary). */
  probeBudgetMs?: number;
  probeCheckTimeoutMs?: number;
  log?: Logger;
}

export async function startController(f: BackendFixture, o: ControllerOptions = {}): Promise<ControllerFixture> {
  const dir = mkdtempSync(join(tmpdir(), "rds-csi-ctrl-"));
  const endpoint = `unix://${join(dir, "csi.sock")}`;
  const log = o.log ?? silentLogger();
  const shutdown = createShutdownCoordinator({ graceMs: 5_000, log });
  const deps = { backend: f.backend, breakers: f.breakers, log, defaults: DEFAULT_PARAMS, managementHost: "127.0.0.1" };
  const probe = createControllerProbe({
    backend: f.backend,
    breakers: f.breakers,
    log,
    budgetMs: o.probeBudgetMs ?? 800,
    checkTimeoutMs: o.probeCheckTimeoutMs ?? 10_000,
  });
  const server = await startCsiServer({
    endpoint,
    shutdown,
    log,
    metrics: createMetrics(),
    handlers: {
      Identity: identityHandlers({
        driverName: "rds.csi.srvlab.io",
        version: "test",
        pluginCapabilities: [{ service: { type: "CONTROLLER_SERVICE" } }],
        probe: probe.probe,
      }),
      Controller: controllerHandlers(deps),
    },
  });
  const client = csiClient(endpoint, { defaultDeadlineMs: 30_000 });
  return {
    client,
    endpoint,
    ctl: client.controller,
    identity: client.identity,
    async close() {
      client.close();
      await server.close();
      await probe.settled();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const mountCap = (mode = "SINGLE_NODE_WRITER", fs_type = "ext4") => ({
  mount: { fs_type, mount_flags: [] },
  access_mode: { mode },
});
export const blockCap = (mode = "SINGLE_NODE_WRITER") => ({ block: {}, access_mode: { mode } });

/** gRPC status code of a call (0 when it succeeds). */
export async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (e) {
    const code = (e as { code?: number }).code;
    if (typeof code !== "number") throw e;
    return code;
  }
}

export const Code = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** The CO's retry: calls again every `everyMs` while `more(last)` holds, at most `times` calls; the last result. */
export async function retryWhile<T>(
  call: () => Promise<T>,
  more: (r: T) => boolean,
  { times = 40, everyMs = 100 } = {},
): Promise<T> {
  let r = await call();
  for (let i = 1; i < times && more(r); i++) {
    await Bun.sleep(everyMs);
    r = await call();
  }
  return r;
}
