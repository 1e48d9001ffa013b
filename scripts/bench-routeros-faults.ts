#!/usr/bin/env bun
/**
 * Issue 11's figures, over real gRPC against the RouterOS simulator (it asserts nothing):
 *  - Probe latency while the router hangs, next to Probe latency on a healthy router (same run) and the
 *    request deadline the old Probe waited for;
 *  - time from the end of a /disk hang to Probe saying ready again, with Probe as the only traffic,
 *    next to the breaker's open period;
 *  - writes (non-GET requests) per CreateVolume / CreateSnapshot in each fault and field mode, next to
 *    the healthy router's.
 */
import { volumeIdForName } from "../src/backends/ids.ts";
import { routerOsFixture, routerOsBackendOn, type RouterOsFixtureOptions } from "../test/backends/harness.ts";
import { GiB, mountCap, startController, type ControllerFixture } from "../test/controller/harness.ts";
import type { FaultSpec, RouterOsSim } from "../test/sim/routeros-sim.ts";

const REQUEST_MS = Number(process.env.BENCH_REQUEST_MS ?? 2_000);
const BUDGET_MS = 800; // the binary's default --probe-budget
const OPEN_MS = Number(process.env.BENCH_OPEN_MS ?? 3_000);
const N_PROBES = Number(process.env.BENCH_PROBES ?? 40);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const fmt = (xs: number[]) =>
  `p50 ${pct(xs, 50).toFixed(1)} ms  p99 ${pct(xs, 99).toFixed(1)} ms  max ${Math.max(...xs).toFixed(1)} ms  (n=${xs.length})`;
const createReq = (name: string) => ({
  name,
  capacity_range: { required_bytes: GiB },
  volume_capabilities: [mountCap()],
});
const writes = (sim: RouterOsSim) => sim.state.requests().filter((r) => r.method !== "GET").length;

async function withController<T>(
  o: RouterOsFixtureOptions,
  fn: (c: ControllerFixture, sim: RouterOsSim, f: Awaited<ReturnType<typeof routerOsFixture>>) => Promise<T>,
): Promise<T> {
  const f = await routerOsFixture({ requestTimeoutMs: REQUEST_MS, ...o });
  const c = await startController(f, { probeBudgetMs: BUDGET_MS, probeCheckTimeoutMs: 3 * REQUEST_MS });
  try {
    return await fn(c, f.sim!, f);
  } finally {
    await c.close();
    await f.close();
  }
}

async function probeSeries(c: ControllerFixture, n: number) {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await c.identity.Probe({});
    ms.push(performance.now() - t);
    await Bun.sleep(250);
  }
  return ms;
}

// 1. Probe latency: healthy, then under a hang of everything.
const { healthy, hung } = await withController({}, async (c, sim) => {
  const healthy = await probeSeries(c, N_PROBES);
  sim.faults.add({ kind: "hang" });
  const hung = await probeSeries(c, N_PROBES);
  return { healthy, hung };
});

// 2. Time to readiness after a /disk hang ends, Probe (every 100 ms) the only traffic.
const recovery = await withController({ initialOpenMs: OPEN_MS }, async (c, sim, f) => {
  const clear = sim.faults.add({ kind: "hang", method: "GET", path: "/rest/disk" });
  const t0 = performance.now();
  while (!f.breakers.isOpen(`backend:${sim.address}`) && performance.now() - t0 < 60_000) {
    await c.identity.Probe({});
    await Bun.sleep(100);
  }
  const openedAfter = performance.now() - t0;
  clear();
  const t1 = performance.now();
  while (!(await c.identity.Probe({})).ready.value && performance.now() - t1 < 10 * OPEN_MS) await Bun.sleep(100);
  return { openedAfter, readyAfter: performance.now() - t1 };
});

// 3. Writes per create in each mode.
type Row = { mode: string; op: string; writes: number; outcome: string };
const rows: Row[] = [];
async function writesPer(
  mode: string,
  o: RouterOsFixtureOptions,
  fault: FaultSpec | undefined,
  op: "volume" | "snapshot" | "race",
) {
  await withController({ copyMs: 200, ...o }, async (c, sim) => {
    const src = op === "snapshot" ? (await c.ctl.CreateVolume(createReq("src"))).volume.volume_id : "";
    const other =
      op === "race"
        ? await startController({
            ...routerOsBackendOn(sim, { requestTimeoutMs: REQUEST_MS }),
            sim,
            close: async () => {},
          })
        : undefined;
    if (fault) sim.faults.add(fault);
    const before = writes(sim);
    let outcome = "OK";
    let tries = 0;
    for (; tries < 50; tries++) {
      try {
        if (op === "snapshot") {
          const r = await c.ctl.CreateSnapshot({ name: "snap", source_volume_id: src });
          if (r.snapshot.ready_to_use) break;
          outcome = "not ready, retried";
        } else if (op === "race") {
          sim.faults.add({ kind: "latency", ms: 300, method: "GET", path: "/rest/disk", times: 2 });
          await Promise.all([c.ctl.CreateVolume(createReq("v")), other!.ctl.CreateVolume(createReq("v"))]);
          break;
        } else {
          await c.ctl.CreateVolume(createReq("v"));
          break;
        }
      } catch (e) {
        outcome = `${(e as { code?: number }).code === 10 ? "ABORTED" : (e as { code?: number }).code === 14 ? "UNAVAILABLE" : String((e as { code?: number }).code)}, retried`;
      }
      await Bun.sleep(100);
    }
    await other?.close();
    const disks = sim.state
      .disks()
      .filter((d) => d.slot === volumeIdForName("v") || d.slot?.startsWith("snap-")).length;
    rows.push({
      mode,
      op: op === "snapshot" ? "CreateSnapshot" : op === "race" ? "2 controllers, 1 name" : "CreateVolume",
      writes: writes(sim) - before,
      outcome: `${outcome}; ${tries + 1} call(s); ${disks} disk(s)`,
    });
  });
}

await writesPer("healthy router (reference)", {}, undefined, "volume");
await writesPer("no comment", { fields: { comment: false } }, undefined, "volume");
await writesPer("no creation-time", { fields: { creationTime: false } }, undefined, "volume");
await writesPer("no status", { fields: { status: false } }, undefined, "volume");
await writesPer(
  "only documented fields",
  { fields: { comment: false, creationTime: false, status: false } },
  undefined,
  "volume",
);
await writesPer(
  "lost response on add",
  {},
  { kind: "lost-response", method: "PUT", path: "/rest/disk", times: 1 },
  "volume",
);
await writesPer(
  "400 Session closed on add",
  {},
  { kind: "session-closed", method: "PUT", path: "/rest/disk", times: 1 },
  "volume",
);
await writesPer("hung add (once)", {}, { kind: "hang", method: "PUT", path: "/rest/disk", times: 1 }, "volume");
await writesPer("RouterOS duplicate wording, lost race", {}, undefined, "race");
await writesPer("healthy router (reference)", {}, undefined, "snapshot");
await writesPer("no creation-time", { fields: { creationTime: false } }, undefined, "snapshot");
await writesPer(
  "only documented fields, no /file times",
  { fields: { comment: false, creationTime: false, status: false }, fileTimes: false },
  undefined,
  "snapshot",
);
await writesPer(
  "copy longer than the router's cut (Session closed)",
  { copyMs: 1_500, serverTimeoutMs: 500 },
  undefined,
  "snapshot",
);
await writesPer(
  "same, row appears only when done",
  { copyMs: 1_500, serverTimeoutMs: 500, copyRowAppears: "when-done" },
  undefined,
  "snapshot",
);

console.log(
  `request deadline ${REQUEST_MS} ms (the old Probe waited for it under a hang), Probe budget ${BUDGET_MS} ms`,
);
console.log(`Probe, healthy router (reference)  ${fmt(healthy)}`);
console.log(`Probe, router hangs                ${fmt(hung)}`);
console.log(
  `/disk hang: breaker open after ${recovery.openedAfter.toFixed(0)} ms of Probe-only traffic; after the hang ended, ready again in ${recovery.readyAfter.toFixed(0)} ms (open period ${OPEN_MS} ms, reference)`,
);
console.log("writes (non-GET requests) per create:");
for (const r of rows)
  console.log(`  ${r.op.padEnd(22)} ${r.mode.padEnd(52)} ${String(r.writes).padStart(2)}   ${r.outcome}`);
