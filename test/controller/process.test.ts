import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { csiClient } from "../../src/csi/client.ts";
import { adminRequest, controllerAdminSocketPath } from "../../src/runtime/admin.ts";
import { startRouterOsSim, type RouterOsSim } from "../sim/routeros-sim.ts";
import { GiB, mountCap } from "./harness.ts";

/** `rds-csi csi-controller` as its own process, as in a cluster, against the RouterOS simulator. */
const MAIN = join(import.meta.dir, "../../src/main.ts");
let sim: RouterOsSim | undefined;
let proc: ReturnType<typeof Bun.spawn> | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (proc && proc.exitCode === null) {
    proc.kill("SIGTERM");
    await proc.exited;
  }
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  proc = sim = dir = undefined;
});

async function startProcess(args: string[]) {
  dir = mkdtempSync(join(tmpdir(), "rds-csi-ctrl-proc-"));
  const sock = join(dir, "csi.sock");
  proc = Bun.spawn(
    [
      "bun",
      MAIN,
      "csi-controller",
      "--endpoint",
      `unix://${sock}`,
      "--state-dir",
      join(dir, "state"),
      "--log-level",
      "debug",
      "--request-timeout",
      "2s",
      ...args,
    ],
    {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, RDS_CSI_ROUTEROS_PASSWORD: "" },
    },
  );
  for (let i = 0; i < 200 && !existsSync(sock); i++) await Bun.sleep(25);
  expect(existsSync(sock)).toBe(true);
  const client = csiClient(`unix://${sock}`, { defaultDeadlineMs: 10_000 });
  const stop = async () => {
    client.close();
    proc!.kill("SIGTERM");
    expect(await proc!.exited).toBe(0);
    return (
      (await new Response(proc!.stdout as ReadableStream).text()) +
      (await new Response(proc!.stderr as ReadableStream).text())
    );
  };
  return {
    ctl: client.controller,
    identity: client.identity,
    stop,
    dir,
  };
}

test("routeros backend with CA file and password file: volumes work, the password is never logged", async () => {
  sim = await startRouterOsSim();
  const pw = join(mkdtempSync(join(tmpdir(), "rds-csi-pw-")), "pw");
  writeFileSync(pw, `${sim.password}\n`, { mode: 0o600 });
  const p = await startProcess([
    "--backend",
    "routeros",
    "--routeros-url",
    sim.url,
    "--routeros-user",
    sim.user,
    "--routeros-password-file",
    pw,
    "--routeros-ca-file",
    sim.caFile,
  ]);
  expect((await p.identity.Probe({})).ready.value).toBe(true);
  const v = (
    await p.ctl.CreateVolume({
      name: "proc-vol",
      capacity_range: { required_bytes: GiB },
      volume_capabilities: [mountCap()],
    })
  ).volume;
  expect(v.volume_context).toMatchObject({
    transport: "nvme-tcp",
    nvmeAddress: "127.0.0.1",
    nqn: `nqn.2000-02.com.mikrotik:${v.volume_id}`,
  });
  expect(sim.state.disks().map((d) => d.slot)).toEqual([v.volume_id]);
  await p.ctl.DeleteVolume({ volume_id: v.volume_id });
  expect(sim.state.disks()).toHaveLength(0);
  const out = await p.stop();
  rmSync(pw, { force: true });
  expect(out).toContain("csi-controller ready");
  expect(out).not.toContain(sim.password);
  expect(out).not.toContain(Buffer.from(`${sim.user}:${sim.password}`).toString("base64"));
});

test("insecure-skip-tls-verify warns at start; a wrong password makes Probe not ready", async () => {
  sim = await startRouterOsSim();
  const pw = join(mkdtempSync(join(tmpdir(), "rds-csi-pw-")), "pw");
  writeFileSync(pw, "wrong-password", { mode: 0o600 });
  const p = await startProcess([
    "--backend",
    "routeros",
    "--routeros-url",
    sim.url,
    "--routeros-user",
    sim.user,
    "--routeros-password-file",
    pw,
    "--routeros-insecure-skip-tls-verify",
  ]);
  expect((await p.identity.Probe({})).ready.value).toBe(false);
  const out = await p.stop();
  rmSync(pw, { force: true });
  expect(out).toMatch(/TLS certificate verification of the RouterOS REST API is OFF/);
  expect(out).not.toContain("wrong-password");
});

test("without a CA the self-signed certificate is refused: Probe not ready", async () => {
  sim = await startRouterOsSim();
  const pw = join(mkdtempSync(join(tmpdir(), "rds-csi-pw-")), "pw");
  writeFileSync(pw, sim.password, { mode: 0o600 });
  const p = await startProcess([
    "--backend",
    "routeros",
    "--routeros-url",
    sim.url,
    "--routeros-user",
    sim.user,
    "--routeros-password-file",
    pw,
  ]);
  expect((await p.identity.Probe({})).ready.value).toBe(false);
  expect(sim.state.requests().filter((r) => r.status === 200)).toHaveLength(0);
  await p.stop();
  rmSync(pw, { force: true });
});

test("the binary's Probe under a router hang answers within --probe-budget, and its admin socket shows the detected features", async () => {
  sim = await startRouterOsSim({ fields: { creationTime: false } });
  sim.state.seedDisk({
    slot: "pvc-seeded",
    "file-path": "/storage-pool/metal-csi/pvc-seeded.img",
    "file-size": String(GiB),
  });
  const pw = join(mkdtempSync(join(tmpdir(), "rds-csi-pw-")), "pw");
  writeFileSync(pw, sim.password, { mode: 0o600 });
  const p = await startProcess([
    "--backend",
    "routeros",
    "--routeros-url",
    sim.url,
    "--routeros-user",
    sim.user,
    "--routeros-password-file",
    pw,
    "--routeros-ca-file",
    sim.caFile,
    "--probe-budget",
    "300ms",
  ]);
  expect((await p.identity.Probe({})).ready.value).toBe(true);
  const { body } = await adminRequest<{ version?: string; fields: { field: string; presence: string }[] }>(
    controllerAdminSocketPath(join(p.dir, "state")),
    "/backend",
  );
  expect(body.version).toBe("7.16 (stable)");
  expect(body.fields.find((f) => f.field === "creation-time")?.presence).toBe("no");
  sim.faults.add({ kind: "hang" });
  const ms: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t = performance.now();
    await p.identity.Probe({});
    ms.push(performance.now() - t);
    await Bun.sleep(300);
  }
  // The request deadline (2 s) is what the old Probe waited for on every call.
  for (const x of ms) expect(x).toBeLessThan(2_000);
  sim.faults.clear();
  const out = await p.stop();
  rmSync(pw, { force: true });
  expect(out).toContain("RouterOS features detected");
});
