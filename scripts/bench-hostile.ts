#!/usr/bin/env bun
/**
 * Hostile-input benchmark (issue 12): what big or many requests do to Probe and to memory.
 * Prints figures next to a reference measured in the same run; asserts nothing.
 *   bun scripts/bench-hostile.ts   (needs dist/rds-csi: scripts/build)
 *
 * 1. Probe latency on the node, idle (reference), while the largest request the limits allow runs
 *    back to back, and while 1 MiB volume_ids (refused at the edge) arrive back to back.
 * 2. A Probe flood offered at 10,000 calls/s for 10 s from one client: answered, refused
 *    (RESOURCE_EXHAUSTED), failed otherwise; RSS before, right after and after 5 s idle.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { csiClient, type CsiClient } from "../src/csi/client.ts";

const BIN = `${import.meta.dir}/../dist/rds-csi`;
const tmp = mkdtempSync("/tmp/rds-csi-bench-hostile-");
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const fmt = (ms: number) => `${ms.toFixed(1)} ms`;
const rssMb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

const kubelet = join(tmp, "kubelet");
mkdirSync(kubelet, { recursive: true });
const sock = join(tmp, "node.sock");
const node = Bun.spawn(
  [
    BIN,
    "csi-node",
    "--nqn-prefix",
    "nqn.2000-02.com.mikrotik:pvc-",
    "--node-id",
    "bench",
    "--state-dir",
    join(tmp, "state"),
    "--kubelet-dir",
    kubelet,
    "--file-dir",
    join(tmp, "files"),
    "--endpoint",
    `unix://${sock}`,
    "--host-nqn-file",
    join(tmp, "none"),
    "--log-level",
    "warn",
  ],
  { stdout: "ignore", stderr: "ignore" },
);
process.on("exit", () => {
  node.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});
for (let i = 0; i < 500 && !(await Bun.file(sock).exists()); i++) await Bun.sleep(10);
const c: CsiClient = csiClient(`unix://${sock}`, { defaultDeadlineMs: 30_000 });
for (let i = 0; i < 200; i++) await c.identity.Probe({});

/** Probe latencies sampled every 5 ms while `load` runs in a loop for `ms`. */
async function probeWhile(load: (() => Promise<unknown>) | null, ms = 3_000): Promise<number[]> {
  let running = true;
  const loop = (async () => {
    while (running && load) await load().catch(() => {});
  })();
  const out: number[] = [];
  const until = performance.now() + ms;
  while (performance.now() < until) {
    const t = performance.now();
    await c.identity.Probe({});
    out.push(performance.now() - t);
    await Bun.sleep(5);
  }
  running = false;
  await loop;
  return out;
}

const cap = { mount: { fs_type: "ext4", mount_flags: [] }, access_mode: { mode: "SINGLE_NODE_WRITER" } };
// The largest request the limits allow: a 128-byte id, a path near 4096 bytes, a 4 KiB volume context.
// It passes every check and goes as far as the attach (the backing file does not exist: NOT_FOUND).
const longPath = `${kubelet}/${`${"c".repeat(200)}/`.repeat(19)}globalmount`;
const context = {
  transport: "loop",
  backingFile: join(tmp, "files", "pvc-big.img"),
  ...Object.fromEntries(Array.from({ length: 95 }, (_, i) => [`key${String(i).padStart(3, "0")}`, "v".repeat(34)])),
};
const largest = () =>
  c.node.NodeStageVolume({
    volume_id: `pvc-${"a".repeat(124)}`,
    staging_target_path: longPath,
    volume_capability: cap,
    volume_context: context,
  });
const huge = "x".repeat(1024 * 1024);
const refused = () =>
  c.node.NodeUnpublishVolume({ volume_id: huge, target_path: `${kubelet}/pods/x/${huge.slice(0, 200)}` });

console.log(
  `largest allowed request answers: ${await largest().then(
    () => "OK",
    (e) => e.details,
  )}`,
);
const rows: [string, number[]][] = [
  ["idle (reference)", await probeWhile(null)],
  ["largest allowed request back to back", await probeWhile(largest)],
  ["1 MiB volume_id back to back (refused)", await probeWhile(refused)],
];
console.log("Probe latency on csi-node               p50        p99        max     samples");
for (const [name, xs] of rows) {
  console.log(
    `  ${name.padEnd(40)} ${fmt(pct(xs, 50)).padStart(9)} ${fmt(pct(xs, 99)).padStart(10)} ${fmt(Math.max(...xs)).padStart(10)} ${String(xs.length).padStart(8)}`,
  );
}

// Flood: 100 calls every 10 ms for 10 s, never more than 20,000 outstanding.
const rssBefore = rssMb(node.pid);
const counts = new Map<string, number>();
let outstanding = 0;
const floodUntil = performance.now() + 10_000;
const pending: Promise<void>[] = [];
while (performance.now() < floodUntil) {
  for (let i = 0; i < 100 && outstanding < 20_000; i++) {
    outstanding++;
    pending.push(
      c.identity
        .Probe({}, { deadlineMs: 20_000 })
        .then(
          () => {
            counts.set("OK", (counts.get("OK") ?? 0) + 1);
          },
          (e) => {
            const k = String((e as { code?: number }).code ?? "?");
            counts.set(k, (counts.get(k) ?? 0) + 1);
          },
        )
        .finally(() => {
          outstanding--;
        }),
    );
  }
  await Bun.sleep(10);
}
await Promise.all(pending);
const rssAfter = rssMb(node.pid);
await Bun.sleep(5_000);
const rssIdle = rssMb(node.pid);
const total = [...counts.values()].reduce((a, b) => a + b, 0);
console.log(
  `Probe flood, ${total} calls offered over 10 s: ${[...counts].map(([k, v]) => `${k === "OK" ? "answered" : k === "8" ? "RESOURCE_EXHAUSTED" : `code ${k}`} ${v}`).join(", ")}`,
);
console.log(
  `RSS of csi-node: before ${rssBefore.toFixed(0)} MB, right after ${rssAfter.toFixed(0)} MB, after 5 s idle ${rssIdle.toFixed(0)} MB`,
);
c.close();
node.kill("SIGTERM");
await node.exited;
