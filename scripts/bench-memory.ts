#!/usr/bin/env bun
/**
 * Where a CSI process's memory goes: this file compiles itself the way scripts/build compiles
 * rds-csi (--compile --splitting --bytecode) and runs the result with the JIT off, as the binary
 * runs. The compiled program loads what csi-node loads, one library at a time in csi-node's order,
 * and prints RSS = private + binary pages after each (a full GC first), then the JSC heap and
 * smaps_rollup at the end. Each row is what that step adds on top of the rows above it: a library
 * loaded first also pays for the Node built-ins it shares with the ones after it. Asserts nothing.
 *   bun scripts/bench-memory.ts
 */
const compiled = import.meta.url.includes("$bunfs");

if (!compiled) {
  const { benchTmpDir } = await import("./bench-cleanup.ts");
  const out = `${benchTmpDir("memory")}/steps`;
  const b = Bun.spawnSync(
    [
      process.execPath,
      "build",
      "--compile",
      "--splitting",
      "--bytecode",
      "--format=esm",
      "--minify-syntax",
      "--outfile",
      out,
      import.meta.path,
    ],
    { stdout: "ignore", stderr: "pipe" },
  );
  if (b.exitCode !== 0) throw new Error(`compile failed: ${b.stderr}`);
  const r = Bun.spawnSync([out], {
    env: { ...process.env, BUN_JSC_useJIT: "0" },
    stdout: "inherit",
    stderr: "inherit",
  });
  process.exit(r.exitCode ?? 1);
}

const { readFileSync } = await import("node:fs");
const { heapStats } = await import("bun:jsc");
let last = { rss: 0, anon: 0, file: 0 };
function row(step: string) {
  Bun.gc(true);
  const st = readFileSync("/proc/self/status", "utf8");
  const mb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(st)?.[1] ?? 0) / 1024;
  const now = { rss: mb("VmRSS"), anon: mb("RssAnon"), file: mb("RssFile") };
  const d = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(1)}`;
  console.log(
    `${step.padEnd(46)} ${now.rss.toFixed(1).padStart(6)} MB  ${d(now.rss - last.rss).padStart(6)}  (private ${d(now.anon - last.anon)}, binary ${d(now.file - last.file)})`,
  );
  last = now;
}

console.log(`${"step (JIT off, as rds-csi runs)".padEnd(46)} ${"RSS".padStart(9)}  added`);
row("Bun runtime, nothing loaded");
await import("node:http2");
await import("node:net");
row("node:http2, net");
await import("../src/csi/grpc-server.ts");
(await import("../src/csi/proto.ts")).csiMethods();
row("gRPC server, CSI wire tables");
await import("pino");
row("pino");
await import("valibot");
await import("yaml");
row("valibot, yaml (config)");
await import("yargs");
row("yargs");
await import("../src/cli.ts");
row("rest of the CLI (config, runtime: cockatiel…)");
await import("../src/modes/csi-node.ts");
row("csi-node mode (node service, nvme, mount, fs)");

const h = heapStats();
const top = Object.entries(h.objectTypeCounts)
  .sort((a, b) => b[1] - a[1])
  .slice(0, 6)
  .map(([k, n]) => `${k} ${n}`)
  .join(", ");
console.log(
  `JSC heap: ${(h.heapSize / 2 ** 20).toFixed(1)} MB live of ${(h.heapCapacity / 2 ** 20).toFixed(1)} MB, ${(h.extraMemorySize / 2 ** 20).toFixed(1)} MB extra; ${h.objectCount} objects (${top})`,
);
const rollup = readFileSync("/proc/self/smaps_rollup", "utf8");
const kb = (k: string) =>
  `${(Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(rollup)?.[1] ?? 0) / 1024).toFixed(1)} MB`;
console.log(
  `smaps_rollup: Rss ${kb("Rss")}, Pss ${kb("Pss")}, Anonymous ${kb("Anonymous")}, Private_Dirty ${kb("Private_Dirty")}, Shared_Clean ${kb("Shared_Clean")}`,
);
