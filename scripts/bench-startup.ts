#!/usr/bin/env bun
/**
 * Issue 2 benchmark: cold start, Probe latency, idle RSS. Prints figures next to a reference
 * measured in the same run (a hello-world compiled the same way). Not a test: nothing is asserted.
 *   bun scripts/bench-startup.ts   (needs dist/rds-csi: scripts/build)
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { csiClient } from "../src/csi/client.ts";

const BIN = `${import.meta.dir}/../dist/rds-csi`;
const tmp = mkdtempSync("/tmp/rds-csi-bench-");
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const fmt = (ms: number) => `${ms.toFixed(ms < 1 ? 3 : 1)} ms`;

async function timeRuns(cmd: string[], runs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const p = Bun.spawn(cmd, { stdout: "ignore", stderr: "ignore" });
    await p.exited;
    out.push(performance.now() - t);
  }
  return out;
}

// Reference: hello world compiled with the same flags.
writeFileSync(`${tmp}/hello.ts`, `console.log("hello");\n`);
await Bun.spawn(["bun", "build", "--compile", "--bytecode", "--format=esm", "--outfile", `${tmp}/hello`, `${tmp}/hello.ts`], { stdout: "ignore" }).exited;
await timeRuns([BIN, "version"], 3);
const RUNS = 25;
const hello = await timeRuns([`${tmp}/hello`], RUNS);
const version = await timeRuns([BIN, "version"], RUNS);
console.log(`cold start (median of ${RUNS}):  rds-csi version ${fmt(pct(version, 50))}   hello-world ${fmt(pct(hello, 50))}   goal ≤ 30 ms`);

async function startDaemon(args: string[], socket: string) {
  const proc = Bun.spawn([BIN, ...args], { stdout: "ignore", stderr: "ignore" });
  const client = csiClient(`unix://${socket}`);
  for (let i = 0; i < 200; i++) {
    try { await client.identity.GetPluginInfo({}, { deadlineMs: 500 }); break; } catch { await Bun.sleep(25); }
  }
  return { proc, client };
}

const ctl = await startDaemon(["csi-controller", "--backend", "file", "--file-dir", `${tmp}/volumes`, "--state-dir", `${tmp}/ctl-state`,
  "--endpoint", `unix://${tmp}/ctl.sock`, "--log-level", "warn"], `${tmp}/ctl.sock`);
for (let i = 0; i < 200; i++) await ctl.client.identity.Probe({});
const seq: number[] = [];
for (let i = 0; i < 2000; i++) {
  const t = performance.now();
  await ctl.client.identity.Probe({});
  seq.push(performance.now() - t);
}
console.log(`Probe, 2,000 sequential calls:  p50 ${fmt(pct(seq, 50))}   p99 ${fmt(pct(seq, 99))}   goal p50 ≤ 0.5 ms`);
const t0 = performance.now();
await Promise.all(Array.from({ length: 1000 }, () => ctl.client.identity.Probe({})));
console.log(`Probe, 1,000 concurrent calls:  ${fmt(performance.now() - t0)} total`);
ctl.client.close();
ctl.proc.kill("SIGTERM");
await ctl.proc.exited;

const node = await startDaemon(["csi-node", "--nqn-prefix", "nqn.2000-02.com.mikrotik:pvc-", "--node-id", "bench", "--state-dir", `${tmp}/node-state`,
  "--kubelet-dir", `${tmp}/kubelet`, "--endpoint", `unix://${tmp}/node.sock`, "--log-level", "warn"], `${tmp}/node.sock`);
await Bun.sleep(2000);
// VmRSS counts the binary's own file pages (shared, reclaimable); RssAnon is the process's private memory.
const memOf = (pid: number) => {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? 0) / 1024;
  return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
};
const nodeMem = memOf(node.proc.pid);
// Reference: an idle compiled Bun program that only keeps a timer.
writeFileSync(`${tmp}/idle.ts`, `setInterval(() => {}, 1000);\n`);
await Bun.spawn(["bun", "build", "--compile", "--bytecode", "--format=esm", "--outfile", `${tmp}/idle`, `${tmp}/idle.ts`], { stdout: "ignore" }).exited;
const idle = Bun.spawn([`${tmp}/idle`]);
await Bun.sleep(1000);
const idleMem = memOf(idle.pid);
idle.kill();
const mb = (m: { rss: number; anon: number; file: number }) => `RSS ${m.rss.toFixed(1)} MB (private ${m.anon.toFixed(1)} MB + binary pages ${m.file.toFixed(1)} MB)`;
console.log(`idle memory after 2 s: csi-node ${mb(nodeMem)}   idle compiled Bun program ${mb(idleMem)}   goal ≤ 70 MB`);
node.client.close();
node.proc.kill("SIGTERM");
await node.proc.exited;
