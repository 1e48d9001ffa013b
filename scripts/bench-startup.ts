#!/usr/bin/env bun
/**
 * Start-up and memory of the compiled binary, next to compiled Bun programs measured in the same run
 * (a hello world, an idle program that only keeps a timer). Prints figures, asserts nothing.
 *   bun scripts/bench-startup.ts          (needs dist/rds-csi: scripts/build; RDS_CSI_BIN=… for another build)
 * Memory per daemon mode: RSS = private (RssAnon) + binary pages (RssFile, the executable's own pages,
 * shared and reclaimable, but what a kubelet memory limit sees), after 2 s idle and after 3,000 Probes.
 * One-shot modes (gc, doctor): peak RSS of the whole run (VmHWM).
 * The binary pages a process maps depend on what of the file is in the page cache (the kernel maps
 * cached neighbours of each page it faults in): each process starts with the whole executable
 * cached, as right after an image pull wrote it, so figures compare between runs and builds (a
 * partly evicted file gave up to 4 MB less, varying with what else the host was doing).
 */
import { closeSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { csiClient } from "../src/csi/client.ts";
import { benchTmpDir, own } from "./bench-cleanup.ts";

const BIN = process.env.RDS_CSI_BIN ?? `${import.meta.dir}/../dist/rds-csi`;
const BIN_PATH = realpathSync(BIN);
const tmp = benchTmpDir("startup");
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
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

async function compile(name: string, source: string): Promise<string> {
  writeFileSync(`${tmp}/${name}.ts`, source);
  const p = Bun.spawn(
    [
      process.execPath,
      "build",
      "--compile",
      "--bytecode",
      "--format=esm",
      "--outfile",
      `${tmp}/${name}`,
      `${tmp}/${name}.ts`,
    ],
    { stdout: "ignore" },
  );
  if ((await p.exited) !== 0) throw new Error(`could not compile the ${name} reference`);
  return `${tmp}/${name}`;
}

interface Mem {
  rss: number;
  anon: number;
  file: number;
}
const memOf = (pid: number): Mem => {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const mb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? 0) / 1024;
  return { rss: mb("VmRSS"), anon: mb("RssAnon"), file: mb("RssFile") };
};
/**
 * Asks the kernel to reclaim a process's clean pages of the executable (process_madvise
 * MADV_PAGEOUT, what memory pressure would do; needs root or CAP_SYS_NICE): what comes back on the
 * next requests is the binary's working set, the rest was start-up only. A measurement, not
 * something the driver does. Returns false where the kernel or permissions refuse.
 */
function pageOutBinary(pid: number): boolean {
  const { dlopen, FFIType, ptr } = require("bun:ffi") as typeof import("bun:ffi");
  const i64 = FFIType.i64;
  const libc = dlopen("libc.so.6", { syscall: { args: [i64, i64, i64, i64, i64, i64], returns: i64 } });
  const SYS_pidfd_open = 434;
  const SYS_process_madvise = 440;
  const MADV_PAGEOUT = 21;
  const pidfd = Number(libc.symbols.syscall(SYS_pidfd_open, pid, 0, 0, 0, 0));
  if (pidfd < 0) return false;
  let ok = true;
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
      const f = line.split(/\s+/);
      if (f[5] !== BIN_PATH || (f[1] !== "r-xp" && f[1] !== "r--p")) continue;
      const [a, b] = f[0]!.split("-").map((x) => BigInt(`0x${x}`));
      const iov = new BigUint64Array([a!, b! - a!]);
      if (Number(libc.symbols.syscall(SYS_process_madvise, pidfd, ptr(iov), 1, MADV_PAGEOUT, 0, 0)) < 0) ok = false;
    }
  } finally {
    closeSync(pidfd);
    libc.close();
  }
  return ok;
}

const show = (m: Mem) => `${m.rss.toFixed(1)} MB (${m.anon.toFixed(1)} private + ${m.file.toFixed(1)} binary)`;

const hello = await compile("hello", `console.log("hello");\n`);
const idleBin = await compile("idle", `setInterval(() => {}, 1000);\n`);

await timeRuns([BIN, "version"], 3);
const RUNS = 25;
const helloRuns = await timeRuns([hello], RUNS);
const versionRuns = await timeRuns([BIN, "version"], RUNS);
console.log(
  `cold start, median of ${RUNS}: rds-csi version ${fmt(pct(versionRuns, 50))}   hello world ${fmt(pct(helloRuns, 50))}   goal ≤ 15 ms`,
);

/** Reads the whole executable into the page cache (see the header). */
const cacheBinary = () => Bun.spawnSync(["cat", BIN], { stdout: "ignore" });

async function startDaemon(label: string, mode: string, args: string[], env: Record<string, string>) {
  cacheBinary();
  const socket = `${tmp}/${label.replace(/\W+/g, "-")}.sock`;
  const proc = Bun.spawn([BIN, mode, ...args, "--endpoint", `unix://${socket}`, "--log-level", "warn"], {
    stdout: "ignore",
    stderr: "ignore",
    env: { ...process.env, ...env },
  });
  own({ pid: proc.pid, needle: socket });
  const client = csiClient(`unix://${socket}`);
  for (let i = 0; i < 400; i++) {
    try {
      await client.identity.GetPluginInfo({}, { deadlineMs: 500 });
      break;
    } catch {
      await Bun.sleep(25);
    }
  }
  return { proc, client };
}

const NODE_ARGS = [
  "--nqn-prefix",
  "nqn.2000-02.com.mikrotik:pvc-",
  "--node-id",
  "bench",
  "--kubelet-dir",
  `${tmp}/kubelet`,
];
// The last row is the JIT choice measured: the same csi-node with the operator override BUN_JSC_useJIT=1.
const DAEMONS: { label: string; mode: string; args: string[]; env: Record<string, string> }[] = [
  { label: "csi-node", mode: "csi-node", args: [...NODE_ARGS, "--state-dir", `${tmp}/node-state`], env: {} },
  {
    label: "csi-controller",
    mode: "csi-controller",
    args: ["--backend", "file", "--file-dir", `${tmp}/volumes`, "--state-dir", `${tmp}/ctl-state`],
    env: {},
  },
  {
    label: "csi-node, JIT on",
    mode: "csi-node",
    args: [...NODE_ARGS, "--state-dir", `${tmp}/node-jit-state`],
    env: { BUN_JSC_useJIT: "1" },
  },
];

Bun.spawnSync(["cat", idleBin], { stdout: "ignore" });
const idle = Bun.spawn([idleBin]);
own({ pid: idle.pid, needle: idleBin });
const rows: string[] = [];
const reclaimRows: string[] = [];
let probeLine = "";
try {
  for (const { label, mode, args, env } of DAEMONS) {
    const d = await startDaemon(label, mode, args, env);
    try {
      await Bun.sleep(2000);
      const atIdle = memOf(d.proc.pid);
      const seq: number[] = [];
      for (let i = 0; i < 3000; i++) {
        const t = performance.now();
        await d.client.identity.Probe({});
        seq.push(performance.now() - t);
      }
      const afterProbes = memOf(d.proc.pid);
      rows.push(`${label.padEnd(17)} idle ${show(atIdle)}   after 3,000 Probes ${show(afterProbes)}`);
      probeLine += `Probe (${label}), 3,000 sequential calls: p50 ${fmt(pct(seq, 50))}   p99 ${fmt(pct(seq, 99))}\n`;
      if (!env.BUN_JSC_useJIT) {
        if (!pageOutBinary(d.proc.pid)) reclaimRows.push(`${label.padEnd(17)} (the kernel refused process_madvise)`);
        else {
          await Bun.sleep(200);
          const reclaimed = memOf(d.proc.pid);
          for (let i = 0; i < 3000; i++) await d.client.identity.Probe({});
          reclaimRows.push(
            `${label.padEnd(17)} reclaimed ${show(reclaimed)}   after 3,000 more Probes ${show(memOf(d.proc.pid))}`,
          );
        }
      }
    } finally {
      d.client.close();
      d.proc.kill("SIGTERM");
      await d.proc.exited;
    }
  }
  rows.push(`${"idle Bun".padEnd(17)} idle ${show(memOf(idle.pid))}   (a compiled program that only keeps a timer)`);
} finally {
  idle.kill();
}
process.stdout.write(probeLine);
console.log("memory after 2 s idle and after 3,000 Probes (goal ≤ 45 MB idle, ≤ 60 MB after Probes):");
for (const r of rows) console.log(`  ${r}`);
console.log(
  "working set: the executable's clean pages reclaimed (MADV_PAGEOUT, as memory pressure would), then serving again:",
);
for (const r of reclaimRows) console.log(`  ${r}`);

/** Peak RSS (VmHWM, monotonic) read every 2 ms while the process runs; misses at most its last 2 ms. */
async function peak(cmd: string[]): Promise<{ mb: number; code: number }> {
  cacheBinary();
  const p = Bun.spawn(cmd, { stdout: "ignore", stderr: "ignore" });
  let hwm = 0;
  const poll = setInterval(() => {
    try {
      hwm = Math.max(hwm, Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p.pid}/status`, "utf8"))?.[1] ?? 0));
    } catch {
      /* exited */
    }
  }, 2);
  const code = await p.exited;
  clearInterval(poll);
  return { mb: hwm / 1024, code };
}
mkdirSync(`${tmp}/gc-state`, { recursive: true });
const gcPeak = await peak([
  BIN,
  "gc",
  "--nqn-prefix",
  "nqn.2000-02.com.mikrotik:pvc-",
  "--state-dir",
  `${tmp}/gc-state`,
  "--kubelet-dir",
  `${tmp}/kubelet`,
  "--referenced-volumes",
  "pvc-none",
]);
const doctorPeak = await peak([
  BIN,
  "doctor",
  "--json",
  "--state-dir",
  `${tmp}/gc-state`,
  "--kubelet-dir",
  `${tmp}/kubelet`,
]);
console.log(
  `peak RSS of one-shot runs: gc (plan) ${gcPeak.mb.toFixed(1)} MB (exit ${gcPeak.code})   doctor --json ${doctorPeak.mb.toFixed(1)} MB (exit ${doctorPeak.code}, this host's ${readFileSync("/proc/self/mountinfo", "utf8").split("\n").length - 1} mounts)`,
);
