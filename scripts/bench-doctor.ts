#!/usr/bin/env bun
/**
 * doctor's mount probing over 1,000 and 10,000 real bind mounts with 10 frozen FUSE mounts among
 * them: wall time next to the probe deadline, peak probe children; and the mountinfo parser next to
 * `findmnt --raw -F` on the same files (100k entries). Run as root. Leaves the host as it found it,
 * interrupted or not (scripts/bench-cleanup.ts): the whole bind tree goes with one lazy unmount of
 * its private tmpfs parent — `umount -R` over 10,000 binds ran past its deadline and left them all.
 *   bun scripts/bench-doctor.ts [--probe-timeout-ms 2000] [--sizes 1000,10000]
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mountsCheck } from "../src/health/mounts.ts";
import type { HealthDeps, RoundFacts } from "../src/health/types.ts";
import { parseMountinfo, readMountinfo } from "../src/mount/mountinfo.ts";
import { createProbeRegistry } from "../src/mount/probe.ts";
import { createRunner } from "../src/runtime/exec.ts";
import { createFrozenFuse, type FrozenFuse } from "../test/helpers/frozen-fuse.ts";
import { benchTmpDir, hostState, own, releaseNow, tearDownTree } from "./bench-cleanup.ts";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const PROBE_TIMEOUT_MS = Number(arg("probe-timeout-ms", "2000"));
const SIZES = arg("sizes", "1000,10000").split(",").map(Number);
const FROZEN = 10;
const runner = createRunner();

async function sh(script: string, timeoutMs = 600_000) {
  const r = await runner("sh", ["-c", script], { timeoutMs });
  if (r.exitCode !== 0) throw new Error(`${script.slice(0, 80)}…: ${r.stderr || r.spawnError}`);
  return r;
}

async function benchParser() {
  const real = readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter(Boolean);
  const lines: string[] = [];
  for (let i = 0; lines.length < 100_000; i++) {
    const l = real[i % real.length]!.split(" ");
    l[0] = String(100_000 + i);
    l[4] = `${l[4]}/bench\\040${i}`;
    lines.push(l.join(" "));
  }
  const dir = benchTmpDir("doctor-mi");
  const file = join(dir, "mountinfo");
  writeFileSync(file, lines.join("\n") + "\n");
  try {
    const text = readFileSync(file, "utf8");
    parseMountinfo(text); // warm-up
    const t0 = performance.now();
    const n = parseMountinfo(text).length;
    const ours = performance.now() - t0;
    const f = await runner("findmnt", ["--raw", "-F", file], { timeoutMs: 60_000, maxOutputBytes: 256 * 2 ** 20 });
    const t1 = performance.now();
    const viaChild = await runner("cat", [file], { timeoutMs: 60_000, maxOutputBytes: 256 * 2 ** 20 });
    parseMountinfo(viaChild.stdout);
    const withChild = performance.now() - t1;
    console.log(
      `parser   ${n} entries: parseMountinfo ${ours.toFixed(1)} ms; read by a child cat + parse ${withChild.toFixed(1)} ms (cat ${viaChild.durationMs} ms) | reference findmnt --raw -F ${f.durationMs} ms (exit ${f.exitCode})`,
    );
  } finally {
    tearDownTree(dir);
  }
}

async function benchProbes(size: number) {
  const base = benchTmpDir("doctor");
  const fuses: FrozenFuse[] = [];
  // A private tmpfs parent keeps thousands of mounts out of every other mount namespace.
  await sh(
    `mount -t tmpfs -o size=16m bench-doctor '${base}' && mount --make-private '${base}' && mkdir '${base}/src'`,
  );
  try {
    const t0 = performance.now();
    await sh(
      `cd '${base}' && i=0; while [ $i -lt ${size} ]; do mkdir t$i && mount --bind src t$i || exit 1; i=$((i+1)); done`,
    );
    const setupMs = performance.now() - t0;
    for (let i = 0; i < FROZEN; i++) {
      const f = await createFrozenFuse();
      fuses.push(f);
      // If this run dies hard, the next one thaws and kills the frozen bindfs and drops its mount.
      own({ dir: f.source });
      own({ dir: f.mountPoint });
      own({ pid: f.pid, needle: f.mountPoint });
    }
    for (const f of fuses) f.freeze();

    const probes = createProbeRegistry({ timeoutMs: PROBE_TIMEOUT_MS, concurrency: 64 });
    const deps = { probes, probeTimeoutMs: PROBE_TIMEOUT_MS } as HealthDeps;
    const started = performance.now();
    const facts: RoundFacts = { mounts: await readMountinfo({ runner }) };
    const readMs = performance.now() - started;
    await mountsCheck.run(deps, facts, new AbortController().signal);
    const wall = performance.now() - started;
    const second = performance.now();
    const facts2: RoundFacts = { mounts: await readMountinfo({ runner }) };
    const startedBefore = probes.children().started;
    await mountsCheck.run(deps, facts2, new AbortController().signal);
    const wall2 = performance.now() - second;
    const c = probes.children();
    console.log(
      `probes   ${facts.mounts!.length} mounts (${size} binds + ${FROZEN} frozen FUSE): round 1 ${wall.toFixed(0)} ms (mountinfo ${readMs.toFixed(0)} ms), ` +
        `dead ${facts.mountSummary!.dead.length}, probe deadline ${PROBE_TIMEOUT_MS} ms → overhead ${(wall - PROBE_TIMEOUT_MS).toFixed(0)} ms; ` +
        `probe children started ${startedBefore}, peak live ${c.peak}; round 2 ${wall2.toFixed(0)} ms, new children ${c.started - startedBefore} (live mounts only; frozen ones answered from their stuck probes), dead ${facts2.mountSummary!.dead.length} | setup ${(setupMs / 1000).toFixed(1)} s`,
    );
    probes.close();
  } finally {
    for (const f of fuses) await f.cleanup();
    tearDownTree(base);
  }
}

const host = hostState();
try {
  await benchParser();
  for (const size of SIZES) await benchProbes(size);
} finally {
  releaseNow();
}
console.log(host.report());
