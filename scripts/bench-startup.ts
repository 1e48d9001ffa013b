#!/usr/bin/env bun
/**
 * Start-up and memory of the compiled binary, next to compiled Bun programs measured in the same run
 * (a hello world, an idle program that only keeps a timer). Prints figures, asserts nothing.
 *   bun scripts/bench-startup.ts          (needs dist/rds-csi: scripts/build)
 *   RDS_CSI_BIN=a=dist/rds-csi,b=/tmp/other bun scripts/bench-startup.ts   (builds side by side)
 *   RUNS=5 (default): each daemon is started that many times per page-cache state
 * Memory per daemon mode: RSS = private (RssAnon) + binary pages (RssFile, the executable's own pages,
 * shared and reclaimable), after 2 s idle and after 3,000 Probes, min / median / max over the runs;
 * the idle Bun program is started as often, in the same states, interleaved with the daemons.
 * The binary pages a process maps depend on how its executable came into the page cache (large
 * folios and fault-around: see bench-page-cache.ts), so every start sets the state first:
 *   written  a fresh copy written in 32 KiB writes and synced, as an image pull leaves it (the
 *            copy is what runs);
 *   cold     the file evicted: the process faults in its own pages (and readahead brings neighbours);
 *   read     the file evicted, then read once by another process (`cat`): the cache a sequential
 *            reader (a checksum, a copy's source) leaves: large folios, the most pages mapped and
 *            the widest spread.
 * Each process also runs in a fresh memory cgroup (bench-memcg.ts): what a memory limit charges it
 * (pages another cgroup brought into the cache are not charged) and the working set kubelet sees.
 * One-shot modes (gc, doctor): peak RSS of the whole run (VmHWM).
 */
import { basename } from "node:path";
import { closeSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { csiClient } from "../src/csi/client.ts";
import { benchTmpDir, own } from "./bench-cleanup.ts";
import { createMemcg, findHierarchy, probeWritable, removeLeftovers } from "./bench-memcg.ts";
import { evict, readIntoCache, writeCopy } from "./bench-page-cache.ts";

/** The builds measured: RDS_CSI_BIN=label=path,… or one path; dist/rds-csi by default. */
const BINS = (process.env.RDS_CSI_BIN ?? `${import.meta.dir}/../dist/rds-csi`).split(",").map((spec, i) => {
  const [label, path] = spec.includes("=") ? spec.split("=", 2) : [i === 0 ? "" : `#${i}`, spec];
  return { label: label!, path: realpathSync(path!) };
});
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
  const exe = realpathSync(`/proc/${pid}/exe`);
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
      if (f[5] !== exe || (f[1] !== "r-xp" && f[1] !== "r--p")) continue;
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

const RUNS = 25;
const helloRuns = await timeRuns([hello], RUNS);
let versions = "";
for (const b of BINS) {
  await timeRuns([b.path, "version"], 3);
  versions += `rds-csi version${b.label ? ` [${b.label}]` : ""} ${fmt(pct(await timeRuns([b.path, "version"], RUNS), 50))}   `;
}
console.log(`cold start, median of ${RUNS}: ${versions}hello world ${fmt(pct(helloRuns, 50))}   goal ≤ 15 ms`);

type CacheState = "written" | "cold" | "read";
const STATES: CacheState[] = ["written", "cold", "read"];
const cacheWarnings = new Set<string>();
/**
 * Sets the page-cache state of the executable (see the header) and returns the file to run; notes
 * it when a cold file was not fully evicted.
 */
function setCache(path: string, state: CacheState): string {
  if (state === "written") return writeCopy(path, `${tmp}/written-${basename(path)}`);
  if (state === "read") {
    readIntoCache(path);
    return path;
  }
  const left = evict(path);
  if (left > 0) cacheWarnings.add(`${path}: ${(left / 2 ** 20).toFixed(1)} MB stayed cached after eviction`);
  return path;
}

const hierarchy = findHierarchy();
const memcgProblem = "unavailable" in hierarchy ? hierarchy.unavailable : probeWritable(hierarchy);
if (!("unavailable" in hierarchy)) removeLeftovers(hierarchy);
const newMemcg = (label: string) =>
  memcgProblem === undefined && !("unavailable" in hierarchy) ? createMemcg(hierarchy, label) : undefined;

interface Sample {
  idle: Mem;
  probes?: Mem;
  cgIdle?: { charged: number; workingSet: number };
  cgProbes?: { charged: number; workingSet: number };
}

/** Starts a process in its own cgroup with its executable in the given cache state. */
function launch(bin: string, cmd: string[], label: string, state: CacheState, env: Record<string, string> = {}) {
  const exe = setCache(bin, state);
  const cg = newMemcg(label);
  const proc = Bun.spawn(cg ? cg.wrap([exe, ...cmd]) : [exe, ...cmd], {
    stdout: "ignore",
    stderr: "ignore",
    env: { ...process.env, ...env },
  });
  return { proc, cg, exe };
}

async function startDaemon(bin: string, d: Daemon, state: CacheState, run: number) {
  const socket = `${tmp}/${d.label.replace(/\W+/g, "-")}-${run}.sock`;
  const stateDir = `${tmp}/${d.label.replace(/\W+/g, "-")}-state`;
  const cmd = [d.mode, ...d.args, "--state-dir", stateDir, "--endpoint", `unix://${socket}`, "--log-level", "warn"];
  const { proc, cg } = launch(bin, cmd, d.label, state, d.env);
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
  return { proc, client, cg };
}

interface Daemon {
  label: string;
  mode: string;
  args: string[];
  env: Record<string, string>;
  /** Measured in the "written" state only: a comparison, not a goal. */
  comparisonOnly?: boolean;
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
const DAEMONS: Daemon[] = [
  { label: "csi-node", mode: "csi-node", args: NODE_ARGS, env: {} },
  {
    label: "csi-controller",
    mode: "csi-controller",
    args: ["--backend", "file", "--file-dir", `${tmp}/volumes`],
    env: {},
  },
  { label: "csi-node, JIT on", mode: "csi-node", args: NODE_ARGS, env: { BUN_JSC_useJIT: "1" }, comparisonOnly: true },
];

const samples = new Map<string, Sample[]>();
const add = (key: string, s: Sample) => samples.set(key, [...(samples.get(key) ?? []), s]);
const reclaimRows: string[] = [];
let probeLine = "";

async function measureDaemon(b: { label: string; path: string }, d: Daemon, state: CacheState, run: number) {
  const key = `${b.label}\t${d.label}\t${state}`;
  const x = await startDaemon(b.path, d, state, run);
  try {
    await Bun.sleep(2000);
    const sample: Sample = { idle: memOf(x.proc.pid), cgIdle: x.cg?.read() };
    const seq: number[] = [];
    for (let i = 0; i < 3000; i++) {
      const t = performance.now();
      await x.client.identity.Probe({});
      seq.push(performance.now() - t);
    }
    sample.probes = memOf(x.proc.pid);
    sample.cgProbes = x.cg?.read();
    add(key, sample);
    if (run === 0 && state === "written") {
      const who = `${d.label}${BINS.length > 1 ? ` [${b.label}]` : ""}`;
      probeLine += `Probe (${who}), 3,000 sequential calls: p50 ${fmt(pct(seq, 50))}   p99 ${fmt(pct(seq, 99))}\n`;
      if (!d.env.BUN_JSC_useJIT) {
        if (!pageOutBinary(x.proc.pid)) reclaimRows.push(`${who.padEnd(17)} (the kernel refused process_madvise)`);
        else {
          await Bun.sleep(200);
          const reclaimed = memOf(x.proc.pid);
          for (let i = 0; i < 3000; i++) await x.client.identity.Probe({});
          reclaimRows.push(
            `${who.padEnd(17)} reclaimed ${show(reclaimed)}   after 3,000 more Probes ${show(memOf(x.proc.pid))}`,
          );
        }
      }
    }
  } finally {
    x.client.close();
    x.proc.kill("SIGTERM");
    await x.proc.exited;
    x.cg?.remove();
  }
}

async function measureIdleBun(state: CacheState) {
  const { proc, cg, exe } = launch(idleBin, [], "idle-bun", state);
  own({ pid: proc.pid, needle: exe });
  try {
    await Bun.sleep(2000);
    add(`\tidle Bun\t${state}`, { idle: memOf(proc.pid), cgIdle: cg?.read() });
  } finally {
    proc.kill();
    await proc.exited;
    cg?.remove();
  }
}

const MEM_RUNS = Number(process.env.RUNS ?? 5);
// Runs interleave builds, modes and states, so that what else the host does falls on all of them alike.
for (let run = 0; run < MEM_RUNS; run++) {
  for (const state of STATES) {
    await measureIdleBun(state);
    for (const d of DAEMONS) {
      if (d.comparisonOnly && state !== "written") continue;
      for (const b of BINS) await measureDaemon(b, d, state, run);
    }
  }
}

const mb = (bytes: number) => bytes / 2 ** 20;
/** min / median / max, and the medians of the parts. */
function spread(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  return `${s[0]!.toFixed(1)} / ${s[Math.floor((s.length - 1) / 2)]!.toFixed(1)} / ${s[s.length - 1]!.toFixed(1)}`;
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const rssCell = (ms: Mem[]) =>
  `${spread(ms.map((m) => m.rss))} (${med(ms.map((m) => m.anon)).toFixed(1)} + ${med(ms.map((m) => m.file)).toFixed(1)})`;

process.stdout.write(probeLine);
console.log(
  `memory over ${MEM_RUNS} runs per state, min / median / max in MB (the parts: median private + binary); goal ≤ 45 MB idle, ≤ 60 MB after 3,000 Probes`,
);
console.log(`  ${"process".padEnd(28)} cache   ${"idle RSS".padEnd(32)} after 3,000 Probes`);
for (const [key, ss] of samples) {
  const [bin, label, state] = key.split("\t");
  const who = `${label}${bin && BINS.length > 1 ? ` [${bin}]` : ""}`;
  const probes = ss.every((s) => s.probes) ? rssCell(ss.map((s) => s.probes!)) : "(no Probes: a timer only)";
  console.log(`  ${who.padEnd(28)} ${state!.padEnd(7)} ${rssCell(ss.map((s) => s.idle)).padEnd(32)} ${probes}`);
}
if (memcgProblem) console.log(`memory cgroup: not measured: ${memcgProblem}`);
else {
  console.log(
    `what a memory limit sees (cgroup ${(hierarchy as { version: string }).version}, one fresh cgroup per process), min / median / max in MB: charged (memory.current; v1 usage_in_bytes) and working set (charged − inactive_file)`,
  );
  console.log(
    `  ${"process".padEnd(28)} cache   ${"idle charged".padEnd(20)} ${"idle working set".padEnd(20)} ${"Probes charged".padEnd(20)} Probes working set`,
  );
  for (const [key, ss] of samples) {
    const [bin, label, state] = key.split("\t");
    const who = `${label}${bin && BINS.length > 1 ? ` [${bin}]` : ""}`;
    const cell = (f: (s: Sample) => number | undefined) => {
      const xs = ss.map(f).filter((x): x is number => x !== undefined);
      return (xs.length ? spread(xs.map(mb)) : "-").padEnd(20);
    };
    console.log(
      `  ${who.padEnd(28)} ${state!.padEnd(7)} ${cell((s) => s.cgIdle?.charged)} ${cell((s) => s.cgIdle?.workingSet)} ${cell((s) => s.cgProbes?.charged)} ${cell((s) => s.cgProbes?.workingSet)}`,
    );
  }
  console.log(
    "  (written, read: the executable's pages are charged to the cgroup that wrote or read them, not to the daemon; cold: the daemon's faults and their readahead are charged to it)",
  );
}
for (const w of cacheWarnings) console.log(`page cache: ${w}`);
console.log(
  "working set: the executable's clean pages reclaimed (MADV_PAGEOUT, as memory pressure would), then serving again:",
);
for (const r of reclaimRows) console.log(`  ${r}`);

/** Peak RSS (VmHWM, monotonic) read every 2 ms while the process runs; misses at most its last 2 ms. */
async function peak(cmd: string[]): Promise<{ mb: number; code: number }> {
  readIntoCache(cmd[0]!);
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
for (const b of BINS) {
  const gcPeak = await peak([
    b.path,
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
    b.path,
    "doctor",
    "--json",
    "--state-dir",
    `${tmp}/gc-state`,
    "--kubelet-dir",
    `${tmp}/kubelet`,
  ]);
  console.log(
    `peak RSS of one-shot runs${b.label ? ` [${b.label}]` : ""} (cache: read, the widest): gc (plan) ${gcPeak.mb.toFixed(1)} MB (exit ${gcPeak.code})   doctor --json ${doctorPeak.mb.toFixed(1)} MB (exit ${doctorPeak.code}, this host's ${readFileSync("/proc/self/mountinfo", "utf8").split("\n").length - 1} mounts)`,
  );
}
