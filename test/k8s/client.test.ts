import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { kubeconfigAccess } from "../../src/k8s/access.ts";
import { createKubeClient, isKubeApiError, type KubeClient } from "../../src/k8s/client.ts";
import { createEventRecorder } from "../../src/k8s/events.ts";
import { createNodeExistence } from "../../src/k8s/node-existence.ts";
import { nodeEventReason } from "../../src/k8s/node-events.ts";
import { makeFilesystem } from "../../src/fs/mkfs.ts";
import { makeDirectory } from "../../src/mount/ops.ts";
import { assertNoStorm, assertTableSane } from "../../src/mount/storm-guard.ts";
import { createNvmeTcpConnector, NqnRefusedError } from "../../src/nvme/nvme-tcp-connector.ts";
import { createRunner, type Runner } from "../../src/runtime/exec.ts";
import { createBreakerRegistry } from "../../src/runtime/breakers.ts";
import { DeadlineError, failedPrecondition } from "../../src/runtime/errors.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { pollOnce } from "./one-poll.ts";
import { clusterRoleRules, startFakeApiServer, type FakeApiServer } from "./fake-apiserver.ts";

const REPO = join(import.meta.dir, "..", "..");
const NODE_RULES = clusterRoleRules(join(REPO, "deploy/rbac-node.yaml"), "rds-csi-node");
const CONTROLLER_RULES = clusterRoleRules(join(REPO, "deploy/rbac-controller.yaml"), "rds-csi-controller");
let api: FakeApiServer;
let dir: string;
let client: KubeClient;
const log = silentLogger();

beforeAll(async () => {
  api = startFakeApiServer({ users: { "node-token": NODE_RULES, "controller-token": CONTROLLER_RULES, nobody: [] } });
  dir = mkdtempSync("/tmp/k8s-client-test-");
  client = createKubeClient({ access: await kubeconfigAccess(api.kubeconfig(dir, "node-token")), timeoutMs: 2_000 });
});
afterAll(() => {
  api.stop();
  rmSync(dir, { recursive: true, force: true });
});

const pv = (name: string, handle: string, annotations: Record<string, string> = {}) =>
  api.put("persistentvolumes", {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: { name, annotations },
    spec: { csi: { driver: "rds.csi.srvlab.io", volumeHandle: handle } },
  });

describe("client", () => {
  test("reads over HTTPS with the kubeconfig's CA and token; 404, 401 and 403 come back as typed errors with the status", async () => {
    pv("pv-a", "pvc-a");
    expect((await client.getPersistentVolume("pv-a")).spec?.csi?.volumeHandle).toBe("pvc-a");
    const missing = await client.getPersistentVolume("pv-none").catch((e) => e);
    expect(isKubeApiError(missing) && missing.status).toBe(404);
    const stranger = createKubeClient({ access: { ...client.access, token: "wrong" }, timeoutMs: 2_000 });
    const unauth = await stranger.getPersistentVolume("pv-a").catch((e) => e);
    expect(isKubeApiError(unauth) && unauth.status).toBe(401);
    expect(String(unauth.message)).not.toContain("wrong"); // the token never reaches a message
    // The node's RBAC (deploy/rbac-node.yaml) does not grant listing VolumeAttachments.
    const denied = await client.listVolumeAttachments().catch((e) => e);
    expect(isKubeApiError(denied) && denied.status).toBe(403);
    expect(String(denied.message)).toContain("forbidden");
  });

  test("a CA that did not sign the server's certificate is refused", async () => {
    const other = createKubeClient({
      access: { server: api.url, token: "node-token", source: "test" },
      timeoutMs: 2_000,
    });
    const e = await other.getPersistentVolume("pv-a").catch((x) => x);
    expect(isKubeApiError(e) && e.status).toBe("network");
  });

  test("lists follow continue tokens across pages", async () => {
    for (let i = 0; i < 23; i++) pv(`pv-page-${i}`, `pvc-page-${i}`);
    const small = createKubeClient({ access: client.access, timeoutMs: 2_000, pageSize: 5 });
    const all = await small.listPersistentVolumes();
    expect(all.filter((p) => p.metadata?.name?.startsWith("pv-page-")).length).toBe(23);
    expect(
      api.requests.filter((r) => r.verb === "list" && r.resource === "persistentvolumes").length,
    ).toBeGreaterThanOrEqual(5);
  });

  test("a hung API server costs one deadline, typed as a timeout; node existence then says unknown", async () => {
    const quick = createKubeClient({ access: client.access, timeoutMs: 300 });
    api.delayMs = Infinity;
    try {
      const t = performance.now();
      const e = await quick.getNode("n1").catch((x) => x);
      expect(isKubeApiError(e) && e.status).toBe("timeout");
      expect(performance.now() - t).toBeLessThan(2_000);
      const nodes = createNodeExistence(quick, { ttlMs: 30_000, log });
      expect(await nodes.check("n1")).toBe("unknown");
    } finally {
      api.delayMs = 0;
    }
  });

  test("node existence: present, gone (404), and cached", async () => {
    api.put("nodes", { apiVersion: "v1", kind: "Node", metadata: { name: "worker-1" } });
    const ctl = createKubeClient({ access: { ...client.access, token: "controller-token" }, timeoutMs: 2_000 });
    const nodes = createNodeExistence(ctl, { ttlMs: 30_000, log });
    expect(await nodes.check("worker-1")).toBe("exists");
    expect(await nodes.check("worker-gone")).toBe("gone");
    const before = api.requests.length;
    expect(await nodes.check("worker-1")).toBe("exists");
    expect(api.requests.length).toBe(before);
  });
});

describe("Events", () => {
  test("ten isomorphic events make one object whose series counts ten; another reason makes another object", async () => {
    const events = createEventRecorder({
      client,
      log,
      controller: "rds.csi.srvlab.io/node",
      instance: "node-1",
      seriesPatchMs: 0,
    });
    const regarding = { apiVersion: "v1", kind: "PersistentVolume", name: "pv-ev" };
    for (let i = 0; i < 10; i++)
      events.emit({ regarding, type: "Warning", reason: "FormatRefused", action: "NodeStageVolume", note: `try ${i}` });
    events.emit({ regarding, type: "Warning", reason: "MountStormRefused", action: "NodeStageVolume", note: "storm" });
    await events.flush();
    const mine = api.list("events").filter((e) => e.regarding?.name === "pv-ev");
    expect(mine.length).toBe(2);
    const fmt = mine.find((e) => e.reason === "FormatRefused")!;
    expect(fmt.metadata.namespace).toBe("default");
    expect(fmt.series?.count).toBe(10);
    expect(fmt.reportingController).toBe("rds.csi.srvlab.io/node");
    expect(fmt.eventTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(mine.find((e) => e.reason === "MountStormRefused")!.series).toBeUndefined();
  });

  test("the per-object spam filter stops a burst of distinct events at 25", async () => {
    const events = createEventRecorder({ client, log, controller: "c", instance: "i" });
    const regarding = { apiVersion: "v1", kind: "PersistentVolume", name: "pv-spam" };
    for (let i = 0; i < 40; i++)
      events.emit({ regarding, type: "Warning", reason: `Reason${i}`, action: "x", note: "n" });
    await events.flush();
    expect(api.list("events").filter((e) => e.regarding?.name === "pv-spam").length).toBe(25);
  });

  test("a forbidden or hung API never makes emit wait or throw", async () => {
    const nobody = createKubeClient({ access: { ...client.access, token: "nobody" }, timeoutMs: 200 });
    const events = createEventRecorder({ client: nobody, log, controller: "c", instance: "i" });
    const t = performance.now();
    events.emit({
      regarding: { apiVersion: "v1", kind: "PersistentVolume", name: "pv-x" },
      type: "Warning",
      reason: "R",
      action: "a",
      note: "n",
    });
    expect(performance.now() - t).toBeLessThan(50);
    await events.flush();
    expect(api.requests.some((r) => r.user === "nobody" && r.resource === "events" && !r.allowed)).toBe(true);
  });

  test("the reasons come from the real producers' errors", () => {
    const mounts = Array.from({ length: 5 }, (_, i) => ({
      id: i,
      parent: 0,
      dev: "259:1",
      root: "/",
      mountPoint: `/m${i}`,
      options: "rw",
      optional: [],
      fsType: "ext4",
      source: "/dev/nvme0n1",
      superOptions: "rw",
    }));
    const storm = (() => {
      try {
        assertNoStorm(mounts as any, { dev: "259:1", target: "/t", source: "/dev/nvme0n1" }, 3);
      } catch (e) {
        return e;
      }
    })();
    expect(nodeEventReason("NodeStageVolume", storm)).toBe("MountStormRefused");
    const table = (() => {
      try {
        assertTableSane(mounts as any, 2);
      } catch (e) {
        return e;
      }
    })();
    expect(nodeEventReason("NodePublishVolume", table)).toBe("MountStormRefused");
    expect(nodeEventReason("NodeStageVolume", new DeadlineError("mkfs", 10))).toBe("StageDeadlineExceeded");
  });

  test("deadline reasons from real children killed at their deadline (a sleep standing in for a hung mkfs or mkdir)", async () => {
    const real = createRunner();
    const hung: Runner = (_cmd, _args, opts) => real("sleep", ["5"], opts);
    const mkfs = await makeFilesystem("/dev/null", "ext4", { runner: hung, log, timeoutMs: 100 }).catch((e) => e);
    expect(String(mkfs.message)).toContain("deadline");
    expect(nodeEventReason("NodeStageVolume", mkfs)).toBe("StageDeadlineExceeded");
    const mkdir = await makeDirectory("/tmp/never", { runner: hung, log, timeoutMs: 100 }).catch((e) => e);
    expect(nodeEventReason("NodeUnstageVolume", mkdir)).toBe("UnstageDeadlineExceeded");
    expect(nodeEventReason("NodeGetVolumeStats", mkdir)).toBeNull();
  });

  test("the NQN gate's refusal of a subsystem that backs a system mount", async () => {
    const nqn = "nqn.2000-02.com.mikrotik:pvc-11111111-2222-4333-8444-555555555555";
    const connector = createNvmeTcpConnector({
      runner: createRunner(),
      log,
      sysfsRoot: "/nonexistent",
      devRoot: "/dev",
      nvmeBin: "false",
      policy: { prefix: "nqn.2000-02.com.mikrotik:pvc-", protectedPatterns: [] },
      systemNqns: async () => new Set([nqn]),
      timeouts: { connectMs: 1_000, disconnectMs: 1_000 },
    });
    const e = await connector
      .attach({ volumeId: "pvc-x", transport: "nvme-tcp", nqn, address: "127.0.0.1", port: 4420 })
      .catch((x) => x);
    expect(nodeEventReason("NodeStageVolume", e)).toBe("SystemVolumeRefused");
    // The refusal is typed with its verdict; the RPC code stays FAILED_PRECONDITION.
    expect(e).toBeInstanceOf(NqnRefusedError);
    expect({ reason: e.verdict.reason, kind: e.kind }).toEqual({
      reason: "backs-system-mount",
      kind: "failed-precondition",
    });
    const foreign = await connector
      .attach({
        volumeId: "x",
        transport: "nvme-tcp",
        nqn: "nqn.2000-02.com.mikrotik:nixos-root",
        address: "127.0.0.1",
        port: 4420,
      })
      .catch((x) => x);
    expect(foreign.verdict.reason).toBe("outside-prefix");
    expect(nodeEventReason("NodeStageVolume", foreign)).toBeNull();
    expect(nodeEventReason("NodeUnstageVolume", new DeadlineError("umount", 10))).toBe("UnstageDeadlineExceeded");
    expect(nodeEventReason("NodePublishVolume", new DeadlineError("x", 10))).toBeNull();
    expect(nodeEventReason("NodeStageVolume", failedPrecondition("volume pvc-1 is staged at /a, not /b"))).toBeNull();
  });
});

describe("PV-annotation reset (in process)", () => {
  test("an open volume breaker is reset when its PV carries the annotation, which is then removed; other PVs are left alone", async () => {
    const breakers = createBreakerRegistry({ threshold: 1, initialOpenMs: 600_000 });
    await breakers.execute("volume:pvc-r1", () => Promise.reject(new Error("mkfs failed"))).catch(() => {});
    await breakers.execute("volume:pvc-r2", () => Promise.reject(new Error("mkfs failed"))).catch(() => {});
    expect(breakers.isOpen("volume:pvc-r1")).toBe(true);
    pv("pv-r1", "pvc-r1", { "rds.csi.srvlab.io/reset-circuit-breaker": "true", keep: "me" });
    pv("pv-r2", "pvc-r2", { "rds.csi.srvlab.io/reset-circuit-breaker": "yes" });
    const resets: string[] = [];
    const events = createEventRecorder({ client, log, controller: "c", instance: "i" });
    await pollOnce({ client, breakers, log, events }, (v) => resets.push(v));
    await events.flush();
    expect(breakers.isOpen("volume:pvc-r1")).toBe(false);
    expect(resets).toEqual(["pvc-r1"]);
    expect(api.get("persistentvolumes", "pv-r1")!.metadata.annotations).toEqual({ keep: "me" });
    expect(breakers.isOpen("volume:pvc-r2")).toBe(true); // only "true" resets
    expect(api.get("persistentvolumes", "pv-r2")!.metadata.annotations["rds.csi.srvlab.io/reset-circuit-breaker"]).toBe(
      "yes",
    );
    const opened = api
      .list("events")
      .filter((e) => e.reason === "CircuitBreakerOpen")
      .map((e) => e.regarding.name)
      .sort();
    expect(opened).toEqual(["pv-r1", "pv-r2"]);
    const note = api
      .list("events")
      .find((e) => e.regarding.name === "pv-r1" && e.reason === "CircuitBreakerOpen")!.note;
    expect(note).toContain("reset-circuit-breaker=true");
    expect(note).toContain("rds-csi breaker reset volume:pvc-r1");
  });
});

test("a kubeconfig that is not valid YAML is refused naming the line, never quoting it (it may hold the token)", async () => {
  const { kubeconfigAccess } = await import("../../src/k8s/access.ts");
  const { mkdtempSync, writeFileSync } = await import("node:fs");
  const file = `${mkdtempSync("/tmp/rds-kubeconfig-")}/config`;
  writeFileSync(file, "users:\n- name: u\n  user:\n    token: s3cr3tTOKEN: x\n");
  const e = await kubeconfigAccess(file).catch((x) => x);
  expect(e.kind).toBe("invalid-argument");
  expect(e.message).toContain("not valid YAML");
  expect(e.message).not.toContain("s3cr3tTOKEN");
});
