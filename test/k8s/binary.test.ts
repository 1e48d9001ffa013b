/**
 * The Kubernetes side through the compiled binary: csi-controller and csi-node as processes,
 * a fake API server on loopback (fake-apiserver.ts) with the RBAC deploy/ grants each of them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { csiClient, type CsiClient } from "../../src/csi/client.ts";
import { BIN, REPO } from "../helpers/binary.ts";
import { releaseUnder } from "../helpers/release-under.ts";
import { Code, DRIVER, GiB, HOST_NQN, NQN_PREFIX, mountCap, outcome } from "../conformance/harness.ts";
import { clusterRoleRules, startFakeApiServer, type FakeApiServer } from "./fake-apiserver.ts";

const ANNOTATION = "rds.csi.srvlab.io/reset-circuit-breaker";

/** The binary as built from the current tree: rebuilt when any file under src/ is newer. */
function freshBinary() {
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((d) =>
        d.isDirectory() ? newest(join(dir, d.name)) : statSync(join(dir, d.name)).mtimeMs,
      ),
    );
  let built = 0;
  try {
    built = statSync(BIN).mtimeMs;
  } catch {
    /* not built */
  }
  if (built >= newest(join(REPO, "src"))) return;
  const b = spawnSync("scripts/build", { cwd: REPO, encoding: "utf8" });
  if (b.status !== 0) throw new Error(`build failed: ${b.stderr}`);
}

let api: FakeApiServer;
let dir: string;
const procs: Bun.Subprocess[] = [];

/** csi-controller on the file backend, its files, state and socket named by `tag` under the test dir. */
const ctlArgs = (tag: string, extra: string[] = []) => [
  ...["csi-controller", "--backend", "file", "--file-dir", `${dir}/disks${tag}`, "--state-dir", `${dir}/ctl${tag}`],
  ...["--endpoint", `unix://${dir}/ctl${tag}.sock`, ...extra],
];
/** csi-node for the controller of the same `tag` (loop volumes of its file backend). */
const nodeArgs = (tag: string, extra: string[] = []) => [
  ...["csi-node", "--nqn-prefix", NQN_PREFIX, "--node-id", `k8s-node${tag}`, "--state-dir", `${dir}/node${tag}`],
  ...[
    "--kubelet-dir",
    `${dir}/kubelet${tag}`,
    "--file-dir",
    `${dir}/disks${tag}`,
    "--host-nqn-file",
    `${dir}/hostnqn${tag}`,
  ],
  ...["--endpoint", `unix://${dir}/node${tag}.sock`, ...extra],
];

function daemon(args: string[], name: string, env: Record<string, string> = {}) {
  const p = Bun.spawn([BIN, ...args], {
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: Bun.file(join(dir, `${name}.log`)),
    stderr: Bun.file(join(dir, `${name}.err`)),
  });
  procs.push(p);
  return p;
}
const logOf = (name: string) => {
  try {
    return readFileSync(join(dir, `${name}.log`), "utf8") + readFileSync(join(dir, `${name}.err`), "utf8");
  } catch {
    return "";
  }
};

async function ready(c: CsiClient, p: Bun.Subprocess, name: string) {
  for (let i = 0; i < 300; i++) {
    if (p.exitCode !== null) break;
    const r = await outcome(c.identity.Probe({}, { deadlineMs: 1_000 }));
    if (r.code === 0 && r.value?.ready?.value === true) return;
    await Bun.sleep(100);
  }
  throw new Error(`${name} not ready (exit ${p.exitCode}):\n${logOf(name).slice(-3000)}`);
}

beforeAll(() => {
  freshBinary();
  api = startFakeApiServer({
    users: {
      node: clusterRoleRules(join(REPO, "deploy/rbac-node.yaml"), "rds-csi-node"),
      controller: clusterRoleRules(join(REPO, "deploy/rbac-controller.yaml"), "rds-csi-controller"),
    },
  });
  dir = mkdtempSync("/tmp/rds-k8s-bin-");
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill("SIGTERM");
  await Promise.all(procs.map((p) => Promise.race([p.exited, Bun.sleep(15_000).then(() => p.kill("SIGKILL"))])));
  api?.stop();
  releaseUnder(dir);
  rmSync(dir, { recursive: true, force: true });
});

describe("PV-annotation breaker reset, end to end", () => {
  test("an operator annotating the PV gets the volume staged again within 30 s, without waiting out the breaker's minute", async () => {
    for (const d of ["disks", "ctl", "node", "kubelet/plugins/kubernetes.io/csi", "bin", "kube-node", "kube-ctl"])
      mkdirSync(join(dir, d), { recursive: true });
    // mkfs.ext4 fails while `broken` exists: three failed stages open the volume's breaker.
    const broken = join(dir, "broken");
    writeFileSync(broken, "");
    writeFileSync(
      join(dir, "bin", "mkfs.ext4"),
      `#!/bin/sh\nif [ -e '${broken}' ]; then echo 'simulated mkfs failure' >&2; exit 1; fi\nexec '${Bun.which("mkfs.ext4")}' "$@"\n`,
    );
    chmodSync(join(dir, "bin", "mkfs.ext4"), 0o755);
    writeFileSync(join(dir, "hostnqn"), `${HOST_NQN}\n`);
    const free = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
    const metricsPort = free.port;
    free.stop(true);
    const ctlProc = daemon(ctlArgs("", ["--kubeconfig", api.kubeconfig(join(dir, "kube-ctl"), "controller")]), "ctl");
    const nodeProc = daemon(
      nodeArgs("", [
        ...["--kubeconfig", api.kubeconfig(join(dir, "kube-node"), "node"), "--breaker-reset-poll", "2s"],
        ...["--metrics-address", `127.0.0.1:${metricsPort}`],
      ]),
      "node",
      { PATH: `${dir}/bin:${process.env.PATH}` },
    );
    const ctl = csiClient(`unix://${dir}/ctl.sock`, { defaultDeadlineMs: 60_000 });
    const node = csiClient(`unix://${dir}/node.sock`, { defaultDeadlineMs: 60_000 });
    try {
      await ready(ctl, ctlProc, "ctl");
      await ready(node, nodeProc, "node");
      // The provisioner (--extra-create-metadata) passes the PV name; the controller carries it into the volume context.
      const created = await ctl.controller.CreateVolume({
        name: "pvc-k8s-e2e",
        capacity_range: { required_bytes: GiB },
        volume_capabilities: [mountCap()],
        parameters: {
          "csi.storage.k8s.io/pv/name": "pv-e2e",
          "csi.storage.k8s.io/pvc/name": "data",
          "csi.storage.k8s.io/pvc/namespace": "app",
        },
      });
      const vol = created.volume;
      expect(vol.volume_context["csi.storage.k8s.io/pv/name"]).toBe("pv-e2e");
      api.put("persistentvolumes", {
        apiVersion: "v1",
        kind: "PersistentVolume",
        metadata: { name: "pv-e2e" },
        spec: { csi: { driver: DRIVER, volumeHandle: vol.volume_id } },
      });
      const staging = join(dir, "kubelet/plugins/kubernetes.io/csi", DRIVER, "e2e", "globalmount");
      mkdirSync(staging, { recursive: true });
      const stage = () =>
        outcome(
          node.node.NodeStageVolume({
            volume_id: vol.volume_id,
            staging_target_path: staging,
            volume_capability: mountCap(),
            volume_context: vol.volume_context,
          }),
        );

      for (let i = 0; i < 3; i++) expect((await stage()).code).not.toBe(Code.OK);
      const open = await stage();
      expect(open.code).toBe(Code.UNAVAILABLE);
      expect(open.details).toContain(`annotate the PV with ${ANNOTATION}=true`);
      rmSync(broken); // the cause is fixed; the breaker would still refuse for a minute
      expect((await stage()).code).toBe(Code.UNAVAILABLE);

      // The opening was reported on the PV (within one poll period).
      for (
        let i = 0;
        i < 50 && !api.list("events").some((e) => e.reason === "CircuitBreakerOpen" && e.regarding?.name === "pv-e2e");
        i++
      )
        await Bun.sleep(100);
      const opened = api
        .list("events")
        .find((e) => e.reason === "CircuitBreakerOpen" && e.regarding?.name === "pv-e2e");
      expect(opened?.note).toContain(`rds-csi breaker reset volume:${vol.volume_id}`);

      const pv = api.get("persistentvolumes", "pv-e2e")!;
      api.put("persistentvolumes", { ...pv, metadata: { ...pv.metadata, annotations: { [ANNOTATION]: "true" } } });
      const t0 = Date.now();
      let staged = await stage();
      while (staged.code !== Code.OK && Date.now() - t0 < 30_000) {
        await Bun.sleep(1_000); // the CO's retry
        staged = await stage();
      }
      expect(staged.code).toBe(Code.OK);
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(api.get("persistentvolumes", "pv-e2e")!.metadata.annotations?.[ANNOTATION]).toBeUndefined(); // one-shot
      expect(logOf("node")).toContain("breaker reset by PV annotation");
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics).toContain(`rds_csi_breaker_annotation_resets_total{key="volume:${vol.volume_id}"} 1`);
      // Nothing was asked that the node's ClusterRole does not grant.
      expect(api.requests.filter((r) => r.user === "node" && !r.allowed)).toEqual([]);
      expect(
        api.requests.some((r) => r.user === "node" && r.verb === "patch" && r.resource === "persistentvolumes"),
      ).toBe(true);
      expect(
        (await outcome(node.node.NodeUnstageVolume({ volume_id: vol.volume_id, staging_target_path: staging }))).code,
      ).toBe(Code.OK);
    } finally {
      ctl.close();
      node.close();
    }
  }, 120_000);
});

describe("ControllerPublishVolume and Node objects", () => {
  test("a node id without a host NQN or whose Node is gone is NOT_FOUND; a hung API answers NOT_FOUND/OK only within its deadline", async () => {
    // Reuses the controller from the test above when it ran; else starts one.
    mkdirSync(join(dir, "disks2"), { recursive: true });
    mkdirSync(join(dir, "kube-ctl2"), { recursive: true });
    const p = daemon(
      ctlArgs("2", ["--kubeconfig", api.kubeconfig(join(dir, "kube-ctl2"), "controller"), "--kube-api-timeout", "1s"]),
      "ctl2",
    );
    const ctl = csiClient(`unix://${dir}/ctl2.sock`, { defaultDeadlineMs: 30_000 });
    try {
      await ready(ctl, p, "ctl2");
      const vol = (
        await ctl.controller.CreateVolume({
          name: "pvc-pub",
          capacity_range: { required_bytes: GiB },
          volume_capabilities: [mountCap()],
        })
      ).volume;
      api.put("nodes", { apiVersion: "v1", kind: "Node", metadata: { name: "worker-a" } });
      const pub = (node_id: string) =>
        outcome(
          ctl.controller.ControllerPublishVolume({
            volume_id: vol.volume_id,
            node_id,
            volume_capability: mountCap(),
            readonly: false,
          }),
        );
      const before = api.requests.length;
      expect((await pub("some-fake-node-id")).code).toBe(Code.NOT_FOUND); // bare name: looked up, no such Node
      expect((await pub(`gone-node/${HOST_NQN}`)).code).toBe(Code.NOT_FOUND);
      expect(api.requests.slice(before).map((r) => `${r.verb} ${r.resource} ${r.name}`)).toEqual([
        "get nodes some-fake-node-id",
        "get nodes gone-node",
      ]);
      const bad = await pub("Not A Node!");
      expect(bad.code).toBe(Code.NOT_FOUND);
      expect(api.requests.length).toBe(before + 2); // malformed: no lookup
      expect((await pub(`worker-a/${HOST_NQN}`)).code).toBe(Code.OK);
      // A hung API server: the publish is decided within the API deadline (1 s), as without an API.
      api.delayMs = Infinity;
      try {
        const t = Date.now();
        const r = await pub(`worker-b/${HOST_NQN}`);
        expect(Date.now() - t).toBeLessThan(5_000);
        expect(r.code).not.toBe(Code.NOT_FOUND); // unknown is not "gone"
      } finally {
        api.delayMs = 0;
      }
      expect(logOf("ctl2")).toContain("cannot ask the Kubernetes API whether nodes exist");
    } finally {
      ctl.close();
    }
  }, 120_000);
});

describe("Events an operator sees", () => {
  test("a refused format on the PV (one object however often it repeats), a storm-guard refusal on the PV and the pod", async () => {
    for (const d of ["disks3", "ctl3", "node3", "kube3", "kubelet3/plugins/kubernetes.io/csi"])
      mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, "hostnqn3"), `${HOST_NQN}\n`);
    const kubeconfig = api.kubeconfig(join(dir, "kube3"), "node");
    const ctlProc = daemon(ctlArgs("3"), "ctl3");
    // Longer than the gRPC deadlines below: an RPC that waited for the API would miss them.
    const node3Args = nodeArgs("3", ["--kubeconfig", kubeconfig, "--kube-api-timeout", "30s"]);
    let nodeProc = daemon(node3Args, "node3");
    const ctl = csiClient(`unix://${dir}/ctl3.sock`, { defaultDeadlineMs: 60_000 });
    let node = csiClient(`unix://${dir}/node3.sock`, { defaultDeadlineMs: 60_000 });
    const eventsOn = (kind: string, name: string, reason: string) =>
      api.list("events").filter((e) => e.regarding?.kind === kind && e.regarding?.name === name && e.reason === reason);
    const waitFor = async (f: () => any[]) => {
      for (let i = 0; i < 100 && f().length === 0; i++) await Bun.sleep(100);
      return f();
    };
    try {
      await ready(ctl, ctlProc, "ctl3");
      await ready(node, nodeProc, "node3");
      const make = async (pv: string) => {
        const v = (
          await ctl.controller.CreateVolume({
            name: `pvc-${pv}`,
            capacity_range: { required_bytes: GiB },
            volume_capabilities: [mountCap()],
            parameters: { "csi.storage.k8s.io/pv/name": pv },
          })
        ).volume;
        const staging = join(dir, "kubelet3/plugins/kubernetes.io/csi", DRIVER, pv, "globalmount");
        mkdirSync(staging, { recursive: true });
        return {
          v,
          staging,
          stageReq: {
            volume_id: v.volume_id,
            staging_target_path: staging,
            volume_capability: mountCap(),
            volume_context: v.volume_context,
          },
        };
      };
      // Foreign data on the device: the stage refuses to format it.
      const a = await make("pv-data");
      const junk = new Uint8Array(1 << 20);
      crypto.getRandomValues(junk.subarray(0, 65536));
      // 64 KiB of random bytes at the start (no signature blkid knows), the size kept.
      await Bun.write(a.v.volume_context.backingFile, junk);
      spawnSync("truncate", ["-s", String(GiB), a.v.volume_context.backingFile]);
      for (let i = 0; i < 2; i++)
        expect((await outcome(node.node.NodeStageVolume(a.stageReq))).code).toBe(Code.FAILED_PRECONDITION);
      const refused = await waitFor(() => eventsOn("PersistentVolume", "pv-data", "FormatRefused"));
      expect(refused.length).toBe(1); // the repeat joined the first one's series
      expect(refused[0].type).toBe("Warning");
      expect(refused[0].note).toContain("refusing to format it");
      expect(refused[0].reportingController).toBe(`${DRIVER}/node`);
      expect(refused[0].reportingInstance).toBe("k8s-node3");

      // A staged volume, then the node restarted with a mount-table limit below the table's size:
      // the publish (naming its pod, podInfoOnMount) is refused by the storm guard.
      const b = await make("pv-storm");
      expect((await outcome(node.node.NodeStageVolume(b.stageReq))).code).toBe(Code.OK);
      node.close();
      nodeProc.kill("SIGTERM");
      await nodeProc.exited;
      nodeProc = daemon([...node3Args, "--storm-total", "1"], "node3b");
      node = csiClient(`unix://${dir}/node3.sock`, { defaultDeadlineMs: 60_000 });
      await ready(node, nodeProc, "node3b");
      const target = join(dir, "kubelet3/pods/uid-1/volumes/kubernetes.io~csi/pv-storm/mount");
      const publishFor = (pod: string, uid?: string) => ({
        volume_id: b.v.volume_id,
        staging_target_path: b.staging,
        target_path: target,
        volume_capability: mountCap(),
        volume_context: {
          ...b.v.volume_context,
          "csi.storage.k8s.io/pod.name": pod,
          "csi.storage.k8s.io/pod.namespace": "app",
          ...(uid ? { "csi.storage.k8s.io/pod.uid": uid } : {}),
        },
      });
      const pub = await outcome(node.node.NodePublishVolume(publishFor("web-0", "uid-1")));
      expect(pub.code).toBe(Code.UNAVAILABLE);
      const onPv = await waitFor(() => eventsOn("PersistentVolume", "pv-storm", "MountStormRefused"));
      const onPod = await waitFor(() => eventsOn("Pod", "web-0", "MountStormRefused"));
      expect(onPv.length).toBe(1);
      expect(onPod.length).toBe(1);
      expect(onPod[0].metadata.namespace).toBe("app");
      expect(onPod[0].regarding.uid).toBe("uid-1");
      expect(onPod[0].related?.name).toBe("pv-storm");
      expect(api.requests.filter((r) => r.user === "node" && !r.allowed)).toEqual([]);

      // An API server that never answers: the same RPCs still answer with their own codes, within
      // a gRPC deadline far below what a blocked call would need; Events wait in the background.
      api.delayMs = Infinity;
      try {
        const again = await outcome(node.node.NodePublishVolume(publishFor("web-1"), { deadlineMs: 10_000 }));
        expect(again.code).toBe(Code.UNAVAILABLE);
        expect(again.details).toContain("mount storm");
        const other = await make("pv-hung");
        const c = await outcome(node.node.NodeStageVolume(other.stageReq, { deadlineMs: 10_000 }));
        expect(c.code).toBe(Code.UNAVAILABLE); // the storm guard again, not a deadline
      } finally {
        api.delayMs = 0;
      }
    } finally {
      ctl.close();
      node.close();
    }
  }, 120_000);
});

describe("--kubeconfig", () => {
  test("a kubeconfig that cannot be used stops csi-node and csi-controller with exit 2 on one line naming it; nothing is created", async () => {
    const base = join(dir, "badcfg");
    mkdirSync(base, { recursive: true });
    const noToken = join(base, "no-token.yaml");
    writeFileSync(
      noToken,
      `apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster: {server: "${api.url}"}\nusers:\n- name: u\n  user: {client-certificate: /x.pem}\n`,
    );
    const cases: [string[], string][] = [
      [nodeArgs("-bad", ["--kubeconfig", `${base}/missing.yaml`]), "cannot read it"],
      [ctlArgs("-bad", ["--kubeconfig", noToken]), "has no token or tokenFile"],
    ];
    for (const [args, why] of cases) {
      const r = spawnSync(BIN, args, { encoding: "utf8", timeout: 30_000 });
      expect(r.status).toBe(2);
      const lines = `${r.stdout}${r.stderr}`
        .trim()
        .split("\n")
        .filter((l) => l.includes("kubeconfig"));
      expect(lines.length).toBe(1);
      expect(lines[0]).toContain(why);
    }
    // The state directories exist before any mode runs (the runtime makes them); nothing is in them, no socket, no lock.
    for (const d of ["node-bad", "ctl-bad"])
      expect(existsSync(join(dir, d)) ? readdirSync(join(dir, d)) : []).toEqual([]);
    expect(existsSync(join(dir, "node-bad.sock")) || existsSync(join(dir, "ctl-bad.sock"))).toBe(false);
  }, 60_000);
});
