import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backendReport } from "../../src/backends/report.ts";
import { controllerBackendCheck } from "../../src/health/controller-backend.ts";
import type { Finding, HealthDeps } from "../../src/health/types.ts";
import { controllerAdminSocketPath, serveAdmin } from "../../src/runtime/admin.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { createShutdownCoordinator } from "../../src/runtime/shutdown.ts";
import { routerOsFixture, type BackendFixture } from "../backends/harness.ts";

/** doctor on a controller host: the features the running controller detected and its real breaker state. */
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function controllerWithAdmin(f: BackendFixture) {
  const stateDir = mkdtempSync(join(tmpdir(), "rds-csi-doctor-ctl-"));
  cleanups.push(() => rmSync(stateDir, { recursive: true, force: true }));
  const log = silentLogger();
  const admin = serveAdmin({
    socketPath: controllerAdminSocketPath(stateDir),
    breakers: f.breakers,
    log,
    mode: "csi-controller",
    shutdown: createShutdownCoordinator({ graceMs: 1_000, log }),
    backend: () => backendReport(f.backend),
  });
  cleanups.push(() => admin.stop());
  return stateDir;
}

const check = (stateDir: string) =>
  controllerBackendCheck.run({ stateDir } as HealthDeps, {}, new AbortController().signal);
const cls = (fs: Finding[], c: string) => fs.filter((f) => f.class === c);

describe("doctor: the controller's RouterOS backend", () => {
  test("no controller on this host is info", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rds-csi-doctor-none-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const fs = await check(dir);
    expect(fs).toHaveLength(1);
    expect(fs[0]).toMatchObject({ severity: "info", class: "csi_controller_backend" });
  });

  test("reports the detected version and fields with the fallback of each missing one, and an open backend breaker", async () => {
    const f = await routerOsFixture({
      fields: { creationTime: false, status: false },
      requestTimeoutMs: 400,
      readAttempts: 1,
      initialOpenMs: 60_000,
    });
    cleanups.push(() => f.close());
    f.sim!.state.seedDisk({
      slot: "pvc-seeded",
      "file-path": "/storage-pool/metal-csi/pvc-seeded.img",
      "file-size": "1073741824",
    });
    await f.backend.probe();
    const stateDir = await controllerWithAdmin(f);
    let fs = await check(stateDir);
    expect(cls(fs, "csi_controller_backend")[0]!.message).toContain("RouterOS 7.16 (stable)");
    const fields = cls(fs, "csi_controller_backend_field").map((x) => x.message);
    expect(fields.some((m) => m.includes("creation-time: absent") && m.includes("/file"))).toBe(true);
    expect(fields.some((m) => m.includes("status: absent") && m.includes("file-size"))).toBe(true);
    expect(cls(fs, "csi_controller_backend_breaker")[0]).toMatchObject({ severity: "ok" });

    f.sim!.faults.add({ kind: "status", status: 500 });
    for (let i = 0; i < 3; i++) await f.backend.getDisk("pvc-00000000-0000-5000-8000-000000000000").catch(() => {});
    fs = await check(stateDir);
    expect(cls(fs, "csi_controller_backend_breaker")[0]).toMatchObject({ severity: "warning" });
    expect(cls(fs, "csi_controller_backend_breaker")[0]!.message).toContain(`backend:${f.sim!.address}`);
  });
});
