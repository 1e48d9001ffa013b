#!/usr/bin/env bun
import { VERSION } from "./version.ts";

/**
 * Entry point. `version` answers before the CLI, gRPC, protobuf and metrics libraries are even
 * evaluated: package checks and health scripts call it often and it must be instant. Everything
 * else loads the CLI, which then loads only the mode it runs.
 */
const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "version") {
  process.stdout.write(`rds-csi ${VERSION}\n`);
  process.exit(0);
}

/**
 * JavaScriptCore's JIT tiers cost ~10 MB at start and ~15 MB more once Probes run hot, for code
 * that spends its time waiting on child processes and the kernel; the interpreter serves a Probe
 * in well under a millisecond. JSC reads its options only from the environment at start-up, so the
 * compiled binary re-executes itself once with the JIT off (same pid: execve). An operator who
 * sets BUN_JSC_useJIT (e.g. =1) decides instead. Figures: scripts/bench-startup.ts.
 * Only the daemons: gc and doctor run once and are CPU-bound while they scan (thousands of mounts,
 * sysfs under a deadline), where the interpreter made doctor miss its 5 s scan deadline in the VM.
 */
const DAEMONS = new Set(["csi-node", "csi-controller"]);
if (process.env.BUN_JSC_useJIT === undefined && DAEMONS.has(args[0] ?? "") && isCompiledBinary()) {
  try {
    process.execve!(process.execPath, [process.execPath, ...args], { ...process.env, BUN_JSC_useJIT: "0" });
  } catch {
    // execve unavailable: run on with the JIT, which only costs memory.
  }
}

function isCompiledBinary(): boolean {
  // Inside `bun build --compile` output, modules live under the virtual /$bunfs root.
  return import.meta.url.includes("$bunfs");
}

const { main } = await import("./cli.ts");
main(args).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`rds-csi: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  },
);
