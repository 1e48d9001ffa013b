import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Backend } from "../../src/backends/backend.ts";
import { createFileBackend } from "../../src/backends/file/file-backend.ts";
import { createRestClient } from "../../src/backends/routeros/rest-client.ts";
import { createRouterOsBackend } from "../../src/backends/routeros/routeros-backend.ts";
import type { RouterOsFeatures } from "../../src/backends/routeros/features.ts";
import { GO_DRIVER_DEFAULT_PREFIX } from "../../src/config/nqn.ts";
import { createBreakerRegistry, type BreakerRegistry } from "../../src/runtime/breakers.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { startRouterOsSim, type RouterOsSim, type SimOptions } from "../sim/routeros-sim.ts";

export interface BackendFixture {
  backend: Backend & { features?(): RouterOsFeatures };
  breakers: BreakerRegistry;
  sim?: RouterOsSim;
  dir?: string;
  close(): Promise<void>;
}

export async function fileFixture(): Promise<BackendFixture> {
  const dir = mkdtempSync(join(tmpdir(), "rds-csi-file-backend-"));
  const backend = createFileBackend({ dir, runner: createRunner(), log: silentLogger() });
  return {
    backend,
    breakers: createBreakerRegistry(),
    dir,
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface RouterOsFixtureOptions extends SimOptions {
  requestTimeoutMs?: number;
  breakerThreshold?: number;
  /** First open period of the breakers (default 60 s, as in the binary). */
  initialOpenMs?: number;
  copyTimeoutMs?: number;
  readAttempts?: number;
}

/** A controller's backend (own breakers, own state dir) on an already running simulator. */
export function routerOsBackendOn(
  sim: RouterOsSim,
  o: RouterOsFixtureOptions = {},
  stateDir = mkdtempSync(join(tmpdir(), "rds-csi-controller-state-")),
) {
  const breakers = createBreakerRegistry({
    threshold: o.breakerThreshold ?? 3,
    initialOpenMs: o.initialOpenMs ?? 60_000,
  });
  const client = createRestClient({
    url: sim.url,
    user: sim.user,
    password: sim.password,
    ca: readFileSync(sim.caFile, "utf8"),
    requestTimeoutMs: o.requestTimeoutMs ?? 2_000,
    breakers,
    log: silentLogger(),
    readAttempts: o.readAttempts ?? 3,
    backoffBaseMs: 20,
  });
  const backend = createRouterOsBackend({
    client,
    log: silentLogger(),
    nqnPrefix: GO_DRIVER_DEFAULT_PREFIX,
    defaultNvmeAddress: "127.0.0.1",
    copyTimeoutMs: o.copyTimeoutMs ?? 5_000,
    stateDir,
  });
  return { backend, breakers, stateDir };
}

export async function routerOsFixture(o: RouterOsFixtureOptions = {}): Promise<BackendFixture> {
  const sim = await startRouterOsSim(o);
  const { backend, breakers, stateDir } = routerOsBackendOn(sim, o);
  return {
    backend,
    breakers,
    sim,
    dir: stateDir,
    close: async () => {
      await sim.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
