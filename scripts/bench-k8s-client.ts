#!/usr/bin/env bun
/**
 * Issue 15: what a Kubernetes client costs at start-up and idle. Three programs compiled like
 * dist/rds-csi (scripts/build's flags), each building a client for a cluster and then idling: a
 * reference that builds nothing, our thin client (src/k8s), and @kubernetes/client-node
 * (KubeConfig + CoreV1Api + EventsV1Api). Prints cold start (median) and idle memory side by side.
 * Then dist/rds-csi csi-node itself, idle, without an API and with --kubeconfig to a loopback fake
 * API server (test/k8s/fake-apiserver.ts): what the node's Kubernetes side costs as shipped.
 * Not a test: nothing is asserted.   bun scripts/bench-k8s-client.ts   (needs dist/rds-csi)
 */
import { mkdtempSync, readFileSync, writeFileSync, statSync } from "node:fs";

const REPO = `${import.meta.dir}/..`;
const tmp = mkdtempSync("/tmp/rds-csi-bench-k8s-");
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

// Each program exits at once with "exit" as argument (start-up) or idles (memory).
const tail = `if (process.argv[2] === "exit") process.exit(0); setInterval(() => {}, 1000);\n`;
const programs: Record<string, string> = {
  "reference (no client)": `const x = { server: "https://127.0.0.1:6443" }; if (!x) throw 0;\n${tail}`,
  "thin client (src/k8s)": `import { createKubeClient } from "${REPO}/src/k8s/client.ts";
const c = createKubeClient({ access: { server: "https://127.0.0.1:6443", token: "t", source: "bench" }, timeoutMs: 5000 });
if (!c.getNode) throw 0;\n${tail}`,
  "@kubernetes/client-node": `import { KubeConfig, CoreV1Api, EventsV1Api } from "${Bun.resolveSync("@kubernetes/client-node", REPO)}";
const kc = new KubeConfig();
kc.loadFromOptions({ clusters: [{ name: "c", server: "https://127.0.0.1:6443", skipTLSVerify: false }], users: [{ name: "u", token: "t" }],
  contexts: [{ name: "x", cluster: "c", user: "u" }], currentContext: "x" });
const core = kc.makeApiClient(CoreV1Api); const ev = kc.makeApiClient(EventsV1Api);
if (!core || !ev) throw 0;\n${tail}`,
};

const memOf = (pid: number) => {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? 0) / 1024;
  return { rss: kb("VmRSS"), anon: kb("RssAnon") };
};

const RUNS = 25;
console.log(
  `${"program".padEnd(26)} ${"binary".padStart(9)} ${"start p50".padStart(10)} ${"start p90".padStart(10)} ${"idle RSS".padStart(9)} ${"private".padStart(9)}`,
);
for (const [name, src] of Object.entries(programs)) {
  const file = `${tmp}/p${Object.keys(programs).indexOf(name)}`;
  writeFileSync(`${file}.ts`, src);
  const b = Bun.spawnSync(
    [
      "bun",
      "build",
      "--compile",
      "--bytecode",
      "--format=esm",
      "--minify-syntax",
      "--minify-whitespace",
      "--no-compile-autoload-dotenv",
      "--no-compile-autoload-bunfig",
      "--compile-exec-argv=--smol",
      "--outfile",
      file,
      `${file}.ts`,
    ],
    { cwd: REPO },
  );
  if (b.exitCode !== 0) throw new Error(`build of ${name} failed: ${b.stderr}`);
  for (let i = 0; i < 3; i++) await Bun.spawn([file, "exit"]).exited;
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await Bun.spawn([file, "exit"], { stdout: "ignore" }).exited;
    times.push(performance.now() - t);
  }
  const idle = Bun.spawn([file]);
  await Bun.sleep(1500);
  const m = memOf(idle.pid);
  idle.kill();
  await idle.exited;
  const mb = (n: number) => `${n.toFixed(1)} MB`;
  console.log(
    `${name.padEnd(26)} ${mb(statSync(file).size / 2 ** 20).padStart(9)} ${`${pct(times, 50).toFixed(1)} ms`.padStart(10)} ${`${pct(times, 90).toFixed(1)} ms`.padStart(10)} ${mb(m.rss).padStart(9)} ${mb(m.anon).padStart(9)}`,
  );
}

// The shipped node, idle 3 s after it answers, with and without the Kubernetes API.
const { startFakeApiServer } = await import("../test/k8s/fake-apiserver.ts");
const api = startFakeApiServer({ users: { node: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }] } });
const BIN = `${REPO}/dist/rds-csi`;
async function idleNode(extra: string[], tag: string) {
  const d = `${tmp}/node-${tag}`;
  const p = Bun.spawn(
    [
      BIN,
      "csi-node",
      "--nqn-prefix",
      "nqn.2000-02.com.mikrotik:pvc-",
      "--node-id",
      "bench",
      "--state-dir",
      `${d}/state`,
      "--kubelet-dir",
      `${d}/kubelet`,
      "--endpoint",
      `unix://${d}/csi.sock`,
      "--log-level",
      "warn",
      ...extra,
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  for (let i = 0; i < 200 && !(await Bun.file(`${d}/csi.sock`).exists()); i++) await Bun.sleep(25);
  await Bun.sleep(3000);
  const m = memOf(p.pid);
  p.kill("SIGTERM");
  await p.exited;
  return m;
}
const without = await idleNode([], "none");
const withApi = await idleNode(["--kubeconfig", api.kubeconfig(tmp, "node")], "api");
api.stop();
const mb = (n: number) => `${n.toFixed(1)} MB`;
console.log(
  `csi-node idle: without an API RSS ${mb(without.rss)} (private ${mb(without.anon)})   with --kubeconfig RSS ${mb(withApi.rss)} (private ${mb(withApi.anon)})`,
);
