/**
 * deploy/ RBAC against what each mode's code asks the API for. The modes' Kubernetes code runs
 * against the fake API server with the ClusterRole deploy/ binds to its service account; the
 * fake records the RBAC verb of every request ([verbs] in fake-apiserver.ts). The node's role must
 * be exactly what the node uses (it has no sidecars); the controller's role must cover what
 * csi-controller and gc/doctor (run in the controller pod, which holds the RouterOS credentials)
 * use on top of its sidecars' rules.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { attachmentsFromKubernetes } from "../../src/gc/allowed-hosts.ts";
import { referencedFromKubernetes } from "../../src/gc/referenced.ts";
import { createKubeClient, type KubeClient } from "../../src/k8s/client.ts";
import { createEventRecorder } from "../../src/k8s/events.ts";
import { createNodeExistence } from "../../src/k8s/node-existence.ts";
import { createBreakerRegistry } from "../../src/runtime/breakers.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { pollOnce } from "./one-poll.ts";
import { clusterRoleRules, startFakeApiServer, type FakeApiServer, type Rule } from "./fake-apiserver.ts";

const REPO = join(import.meta.dir, "..", "..");
const NODE = clusterRoleRules(join(REPO, "deploy/rbac-node.yaml"), "rds-csi-node");
const CONTROLLER = clusterRoleRules(join(REPO, "deploy/rbac-controller.yaml"), "rds-csi-controller");
const log = silentLogger();
let api: FakeApiServer;
const clientAs = (token: string): KubeClient =>
  createKubeClient({ access: { server: api.url, token, ca: api.ca, source: "test" }, timeoutMs: 2_000 });

beforeAll(() => {
  api = startFakeApiServer({ users: { node: NODE, controller: CONTROLLER } });
});
afterAll(() => api.stop());

const granted = (rules: Rule[]) =>
  new Set(
    rules.flatMap((r) =>
      r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`))),
    ),
  );
const used = (user: string) =>
  new Set(api.requests.filter((r) => r.user === user).map((r) => `${r.group}/${r.resource}:${r.verb}`));

test("csi-node: its ClusterRole grants exactly what its Kubernetes code uses, and nothing it uses is refused", async () => {
  const client = clientAs("node");
  // The breaker-reset poll of a volume whose PV name is not in its volume context (found by list).
  api.put("persistentvolumes", {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: { name: "pv-rbac", annotations: { "rds.csi.srvlab.io/reset-circuit-breaker": "true" } },
    spec: { csi: { volumeHandle: "pvc-rbac" } },
  });
  const breakers = createBreakerRegistry({ threshold: 1 });
  await breakers.execute("volume:pvc-rbac", () => Promise.reject(new Error("x"))).catch(() => {});
  const events = createEventRecorder({
    client,
    log,
    controller: "rds.csi.srvlab.io/node",
    instance: "n",
    seriesPatchMs: 0,
  });
  await pollOnce({ client, breakers, log, events });
  // A repeated Event grows its series (patch).
  for (let i = 0; i < 2; i++)
    events.emit({
      regarding: { apiVersion: "v1", kind: "PersistentVolume", name: "pv-rbac" },
      type: "Warning",
      reason: "FormatRefused",
      action: "NodeStageVolume",
      note: "n",
    });
  await events.flush();
  expect(breakers.isOpen("volume:pvc-rbac")).toBe(false);
  expect(api.requests.filter((r) => r.user === "node" && !r.allowed)).toEqual([]);
  expect([...used("node")].sort()).toEqual([...granted(NODE)].sort());
});

test("csi-controller and gc/doctor: everything they use is granted to the controller's service account", async () => {
  const client = clientAs("controller");
  await createNodeExistence(client, { ttlMs: 1_000, log }).check("worker-x");
  await referencedFromKubernetes(client);
  await attachmentsFromKubernetes(client);
  const denied = api.requests.filter((r) => r.user === "controller" && !r.allowed);
  expect(denied).toEqual([]);
  const all = granted(CONTROLLER);
  expect([...used("controller")].filter((u) => !all.has(u))).toEqual([]);
  expect(used("controller").size).toBeGreaterThanOrEqual(4);
});
