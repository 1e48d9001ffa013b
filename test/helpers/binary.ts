/**
 * The compiled binary as a test drives it: build once if missing, spawn daemons with their output
 * captured, wait until they answer on their socket, and kill whatever is left at the end.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { csiClient, type CsiClient } from "../../src/csi/client.ts";

export const REPO = join(import.meta.dir, "..", "..");
export const BIN = join(REPO, "dist", "rds-csi");

export function ensureBinary(): void {
  if (existsSync(BIN)) return;
  const b = Bun.spawnSync(["scripts/build"], { cwd: REPO });
  if (b.exitCode !== 0) throw new Error(`build failed: ${b.stderr}`);
}

export interface Daemon {
  proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  output(): Promise<string>;
}

const spawned: Bun.Subprocess[] = [];

export function spawnBinary(args: string[], env: Record<string, string> = {}, cwd = REPO): Daemon {
  const proc = Bun.spawn([BIN, ...args], {
    cwd,
    env: { PATH: process.env.PATH!, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  spawned.push(proc);
  return {
    proc,
    output: async () => `${await new Response(proc.stdout).text()}${await new Response(proc.stderr).text()}`,
  };
}

export function runBinary(args: string[], env: Record<string, string> = {}, cwd = REPO) {
  const r = Bun.spawnSync([BIN, ...args], { cwd, env: { PATH: process.env.PATH!, ...env }, stdin: "ignore" });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

export async function waitAnswering(endpoint: string, d?: Daemon, deadlineMs = 10_000): Promise<CsiClient> {
  const until = Date.now() + deadlineMs;
  // The client is made once the socket exists: grpc-js backs off a whole second after a failed first connect.
  const path = endpoint.replace(/^unix:(\/\/)?/, "");
  while (endpoint.startsWith("unix:") && !existsSync(path) && Date.now() < until) {
    if (d && d.proc.exitCode !== null) throw new Error(`daemon exited ${d.proc.exitCode}: ${await d.output()}`);
    await Bun.sleep(10);
  }
  const c = csiClient(endpoint, { defaultDeadlineMs: 60_000 });
  while (Date.now() < until) {
    if (d && d.proc.exitCode !== null) throw new Error(`daemon exited ${d.proc.exitCode}: ${await d.output()}`);
    try {
      await c.identity.GetPluginInfo({}, { deadlineMs: 500 });
      return c;
    } catch {
      await Bun.sleep(30);
    }
  }
  throw new Error(`no answer on ${endpoint}`);
}

export function killAllSpawned(): void {
  for (const p of spawned) if (p.exitCode === null) p.kill("SIGKILL");
}

// One definition of "what did the RPC answer", shared with the conformance suite.
export { outcome } from "../conformance/harness.ts";
