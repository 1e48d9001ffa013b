/**
 * Attachment hygiene in gc, through `rds-csi gc` as a child process: the RouterOS simulator holds
 * the exports, the fake API server the Nodes, VolumeAttachments and PVs (controller RBAC: gc and
 * doctor with a backend run where the RouterOS credentials are, the controller pod).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { volumeIdForName } from "../../src/backends/ids.ts";
import { routerOsFixture, type BackendFixture } from "../backends/harness.ts";
import { gcArgs, ids, makeSandbox, runGc, type Sandbox } from "../gc/helpers.ts";
import { clusterRoleRules, startFakeApiServer, type FakeApiServer } from "./fake-apiserver.ts";

const REPO = join(import.meta.dir, "..", "..");
const host = (n: number) => `nqn.2014-08.org.nvmexpress:uuid:0000000${n}-0000-4000-8000-000000000000`;
let api: FakeApiServer;
let fixture: BackendFixture;
let sb: Sandbox;

beforeAll(async () => {
  api = startFakeApiServer({
    users: { controller: clusterRoleRules(join(REPO, "deploy/rbac-controller.yaml"), "rds-csi-controller") },
  });
  fixture = await routerOsFixture();
  sb = makeSandbox();
});
afterAll(async () => {
  api.stop();
  await fixture.close();
  sb.cleanup();
});

test("allowed hosts of a gone Node or of no VolumeAttachment are reported; --force forgets those publications on the RouterOS side and never empties an allow list", async () => {
  const b = fixture.backend;
  const sim = fixture.sim!;
  const [gone, attached, unattached, unpublished] = ["gone", "att", "unatt", "unpub"].map((n) =>
    volumeIdForName(`hyg-${n}`),
  ) as [string, string, string, string];
  const req = (id: string) => ({ id, sizeBytes: 1 << 30, volumePath: "/storage-pool/metal-csi", meta: {} });
  for (const id of [gone, attached, unattached, unpublished]) await b.createDisk(req(id));
  await b.setPublications(gone, { publishedTo: [`dead-node/${host(1)}`], publishMode: "SINGLE_NODE_WRITER" }, [
    host(1),
  ]);
  await b.setPublications(attached, { publishedTo: [`live-node/${host(2)}`], publishMode: "SINGLE_NODE_WRITER" }, [
    host(2),
  ]);
  await b.setPublications(unattached, { publishedTo: [`live-node/${host(2)}`], publishMode: "SINGLE_NODE_WRITER" }, [
    host(2),
  ]);
  await b.setPublications(unpublished, {}, [host(3)]); // the last host an unpublish keeps
  api.put("nodes", { apiVersion: "v1", kind: "Node", metadata: { name: "live-node" } });
  for (const id of [gone, attached, unattached, unpublished]) {
    api.put("persistentvolumes", {
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: `pv-${id}` },
      spec: { csi: { driver: "rds.csi.srvlab.io", volumeHandle: id } },
    });
  }
  api.put("volumeattachments", {
    apiVersion: "storage.k8s.io/v1",
    kind: "VolumeAttachment",
    metadata: { name: "va-1" },
    spec: { attacher: "rds.csi.srvlab.io", nodeName: "live-node", source: { persistentVolumeName: `pv-${attached}` } },
  });

  const pw = join(sb.root, "pw");
  writeFileSync(pw, `${sim.password}\n`);
  const routeros = ["--backend", "routeros", "--routeros-url", sim.url, "--routeros-user", sim.user];
  const access = [...routeros, "--routeros-password-file", pw, "--routeros-ca-file", sim.caFile];
  const args = gcArgs(sb, [...access, "--kubeconfig", api.kubeconfig(sb.root, "controller"), "--json", "--verbose"]);
  const planRun = await runGc(args);
  expect(planRun.stderr).toBe("");
  expect(ids(planRun.json!.candidates)).toEqual([
    `allowed-host ${gone} ${host(1)}`,
    `allowed-host ${unattached} ${host(2)}`,
  ]);
  const reasons = new Map([...planRun.json!.candidates, ...planRun.json!.skipped].map((c) => [c.id, c.reason]));
  expect(reasons.get(`${gone} ${host(1)}`)).toContain("Node dead-node no longer exists");
  expect(reasons.get(`${unattached} ${host(2)}`)).toContain(
    `no VolumeAttachment references ${unattached} on node live-node`,
  );
  expect(reasons.get(`${attached} ${host(2)}`)).toContain("attached on live-node");
  expect(reasons.get(`${unpublished} ${host(3)}`)).toContain("no publication names it");
  expect(api.requests.filter((r) => !r.allowed)).toEqual([]);

  const force = await runGc([...args, "--force"]);
  expect(force.json!.results!.map((r) => `${r.status} ${r.id}`).sort()).toEqual([
    `done ${gone} ${host(1)}`,
    `done ${unattached} ${host(2)}`,
  ]);
  const after = async (id: string) => (await b.getDisk(id))!;
  expect((await after(gone)).meta.publishedTo ?? []).toEqual([]);
  expect((await after(gone)).allowedHosts).toEqual([host(1)]); // the only allowed host stays: an empty list opens the export
  expect((await after(unattached)).meta.publishedTo ?? []).toEqual([]);
  expect((await after(attached)).meta.publishedTo).toEqual([`live-node/${host(2)}`]);
  expect((await after(unpublished)).allowedHosts).toEqual([host(3)]);
  expect(sim.state.disks().length).toBe(4); // nothing deleted: every disk is referenced by a PV

  // Without an API gc says it did not look, and changes nothing.
  const blind = await runGc(
    gcArgs(sb, [...access, "--referenced-volumes", gone, attached, unattached, unpublished, "--json", "--verbose"]),
  );
  expect(blind.json!.candidates.filter((c) => c.kind === "allowed-host")).toEqual([]);
  expect(blind.json!.skipped.find((s) => s.kind === "allowed-host")!.reason).toContain("no Kubernetes API");
}, 120_000);
