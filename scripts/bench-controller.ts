#!/usr/bin/env bun
/**
 * CreateVolume / DeleteVolume latency over real gRPC against the RouterOS simulator holding 1,000
 * disks, and 32 concurrent CreateVolume calls for 8 distinct names (disks created must equal 8).
 * Reference measured in the same run: a bare REST GET against the same simulator (the floor every
 * RPC pays at least once). Leaves the host as it found it, interrupted or not (scripts/bench-cleanup.ts).
 */
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { GO_DRIVER_DEFAULT_PREFIX } from "../src/config/nqn.ts";
import { createRestClient } from "../src/backends/routeros/rest-client.ts";
import { volumeIdForName } from "../src/backends/ids.ts";
import { createBreakerRegistry } from "../src/runtime/breakers.ts";
import { silentLogger } from "../src/runtime/log.ts";
import { routerOsFixture } from "../test/backends/harness.ts";
import { GiB, mountCap, startController } from "../test/controller/harness.ts";
import { hostState, own, releaseNow } from "./bench-cleanup.ts";

const N_SEED = 1_000;
const N_OPS = Number(process.env.BENCH_OPS ?? 100);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(1)} ms  p99 ${pct(xs, 99).toFixed(1)} ms  (n=${xs.length})`;

const host = hostState();
const f = await routerOsFixture({ requestTimeoutMs: 10_000, poolBytes: 2 ** 50 });
const sim = f.sim!;
own({ dir: dirname(sim.caFile) });
for (let i = 0; i < N_SEED; i++) {
  const slot = volumeIdForName(`seed-${i}`);
  sim.state.seedDisk({
    slot,
    "file-path": `/storage-pool/metal-csi/${slot}.img`,
    "file-size": String(GiB),
    "nvme-tcp-export": "true",
    "nvme-tcp-server-port": "4420",
    "nvme-tcp-server-nqn": `nqn.2000-02.com.mikrotik:${slot}`,
  });
}
const c = await startController(f);
own({ dir: dirname(c.endpoint.replace(/^unix:\/\//, "")) });
let created = -1;
try {
  // Reference: one REST GET by slot, straight to the simulator.
  const rest = createRestClient({
    url: sim.url,
    user: sim.user,
    password: sim.password,
    ca: readFileSync(sim.caFile, "utf8"),
    requestTimeoutMs: 10_000,
    breakers: createBreakerRegistry(),
    log: silentLogger(),
  });
  const ref: number[] = [];
  for (let i = 0; i < N_OPS; i++) {
    const t = performance.now();
    await rest.get("disk", { slot: volumeIdForName(`seed-${i}`) });
    ref.push(performance.now() - t);
  }

  const create: number[] = [];
  const del: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < N_OPS; i++) {
    const t = performance.now();
    const r = await c.ctl.CreateVolume({
      name: `bench-${i}`,
      capacity_range: { required_bytes: GiB },
      volume_capabilities: [mountCap()],
    });
    create.push(performance.now() - t);
    ids.push(r.volume.volume_id);
  }
  for (const id of ids) {
    const t = performance.now();
    await c.ctl.DeleteVolume({ volume_id: id });
    del.push(performance.now() - t);
  }

  const before = sim.state.disks().length;
  const names = Array.from({ length: 32 }, (_, i) => `dup-${i % 8}`);
  const t = performance.now();
  const results = await Promise.allSettled(
    names.map((name) =>
      c.ctl.CreateVolume({ name, capacity_range: { required_bytes: GiB }, volume_capabilities: [mountCap()] }),
    ),
  );
  const burstMs = performance.now() - t;
  created = sim.state.disks().length - before;
  const failed = results.filter((r) => r.status === "rejected").length;

  console.log(`simulator holding ${before} disks (${N_SEED} seeded), nqn prefix ${GO_DRIVER_DEFAULT_PREFIX}`);
  console.log(`reference  REST GET /disk?slot=  ${fmt(ref)}`);
  console.log(`CreateVolume                     ${fmt(create)}`);
  console.log(`DeleteVolume                     ${fmt(del)}`);
  console.log(
    `32 concurrent CreateVolume, 8 distinct names: ${created} disks created (expected 8), ${failed} calls failed, ${burstMs.toFixed(0)} ms total`,
  );
} finally {
  await c.close();
  await f.close();
  releaseNow();
}
console.log(host.report());
if (created !== 8) process.exit(1);
