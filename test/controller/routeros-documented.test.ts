import { afterEach, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { snapshotIdForName, volumeIdForName } from "../../src/backends/ids.ts";
import {
  routerOsBackendOn,
  routerOsFixture,
  type BackendFixture,
  type RouterOsFixtureOptions,
} from "../backends/harness.ts";
import type { RouterOsSim } from "../sim/routeros-sim.ts";
import { Code, GiB, codeOf, mountCap, retryWhile, startController, type ControllerFixture } from "./harness.ts";

/**
 * Issue 11: the controller against a router that behaves as MikroTik documents it (see the simulator's
 * header for the sources). Each test here failed on the code before the issue.
 */
const REQUEST_MS = 600;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(o: RouterOsFixtureOptions = {}, budgetMs = 300) {
  const f = await routerOsFixture({ requestTimeoutMs: REQUEST_MS, readAttempts: 1, ...o });
  cleanups.push(() => f.close());
  const c = await startController(f, { probeBudgetMs: budgetMs, probeCheckTimeoutMs: 3 * REQUEST_MS });
  cleanups.push(() => c.close());
  return { f, c, sim: f.sim! };
}

/** A second controller (own breakers and state dir) on the same router. */
async function second(sim: RouterOsSim, o: RouterOsFixtureOptions = {}) {
  const b = routerOsBackendOn(sim, { requestTimeoutMs: REQUEST_MS, readAttempts: 1, ...o });
  const c = await startController({ ...b, sim, close: async () => {} });
  cleanups.push(() => {
    rmSync(b.stateDir, { recursive: true, force: true });
  });
  cleanups.push(() => c.close());
  return c;
}

const createReq = (name: string, gib = 1) => ({
  name,
  capacity_range: { required_bytes: gib * GiB },
  volume_capabilities: [mountCap()],
  parameters: {},
});
const slotsNamed = (sim: RouterOsSim, name: string) =>
  sim.state.disks().filter((d) => d.slot === volumeIdForName(name));
const copyFroms = (sim: RouterOsSim) => sim.state.requests().filter((r) => r.method === "PUT").length;
const writes = (sim: RouterOsSim) => sim.state.requests().filter((r) => r.method !== "GET").length;
const ready = async (c: ControllerFixture) => (await c.identity.Probe({})).ready.value as boolean;

async function timedProbe(c: ControllerFixture) {
  const t = performance.now();
  const r = await c.identity.Probe({});
  return { ready: r.ready.value as boolean, ms: performance.now() - t };
}

/** No breaker is ever shown `open` with its open period already over. */
function expectTruthfulBreakers(f: BackendFixture) {
  for (const b of f.breakers.list()) {
    if (b.state === "open") expect(b.openUntil!).toBeGreaterThan(Date.now());
  }
}

describe("Probe: a fixed budget, a background check, readiness that comes back by itself", () => {
  test("while the router hangs, every Probe answers within its budget (not the request deadline)", async () => {
    const { c, sim } = await setup();
    expect(await ready(c)).toBe(true);
    sim.faults.add({ kind: "hang" });
    const runs = [];
    // Long enough for the last success to go stale and a background check to time out.
    for (let i = 0; i < 16; i++) {
      runs.push(await timedProbe(c));
      await Bun.sleep(150);
    }
    // The bound is the request deadline: the old Probe waited for it on every call.
    console.log(`probe under hang: ${runs.map((r) => `${r.ms.toFixed(0)}${r.ready ? "+" : "-"}`).join(", ")} ms`);
    for (const r of runs) expect(r.ms).toBeLessThan(REQUEST_MS);
    expect(runs.at(-1)!.ready).toBe(false);
  });

  test("after the fault clears, readiness returns within one open period with nothing but Probe calls", async () => {
    const openMs = 1_000;
    const { f, c, sim } = await setup({ initialOpenMs: openMs });
    expect(await ready(c)).toBe(true);
    const clear = sim.faults.add({ kind: "hang", method: "GET", path: "/rest/disk" });
    for (let i = 0; i < 40 && !f.breakers.isOpen(`backend:${sim.address}`); i++) {
      await c.identity.Probe({});
      await Bun.sleep(100);
    }
    expect(f.breakers.isOpen(`backend:${sim.address}`)).toBe(true);
    clear();
    const cleared = performance.now();
    let back = false;
    // Probe every 100 ms for at most three open periods; no other RPC.
    for (let i = 0; i < 30 && !back; i++) {
      expectTruthfulBreakers(f);
      back = await ready(c);
      if (!back) await Bun.sleep(100);
    }
    expect(back).toBe(true);
    expect(f.breakers.get(`backend:${sim.address}`)?.state).toBe("closed");
    console.log(
      `readiness back ${(performance.now() - cleared).toFixed(0)} ms after the fault cleared (open period ${openMs} ms)`,
    );
  });
});

describe("breakers count what matters", () => {
  test("a /disk hang opens the backend breaker after three timeouts although /system/resource answers", async () => {
    const { f, c, sim } = await setup();
    sim.faults.add({ kind: "hang", method: "GET", path: "/rest/disk" });
    for (let i = 0; i < 3; i++) {
      // The livenessprobe keeps calling Probe in between, as in a cluster.
      await c.identity.Probe({});
      expect(await codeOf(c.ctl.ControllerGetVolume({ volume_id: volumeIdForName("x") }))).toBe(Code.UNAVAILABLE);
    }
    expect(f.breakers.isOpen(`backend:${sim.address}`)).toBe(true);
    const before = sim.state.requests().length;
    expect(await codeOf(c.ctl.ControllerGetVolume({ volume_id: volumeIdForName("x") }))).toBe(Code.UNAVAILABLE);
    expect(sim.state.requests().length).toBe(before);
  });

  test("hanging adds open it too, although every read of /disk answers", async () => {
    const { f, c, sim } = await setup();
    sim.faults.add({ kind: "hang", method: "PUT", path: "/rest/disk" });
    for (let i = 0; i < 3; i++) {
      await c.identity.Probe({});
      expect(await codeOf(c.ctl.CreateVolume(createReq(`hang-add-${i}`)))).toBe(Code.UNAVAILABLE);
    }
    expect(f.breakers.get(`backend:${sim.address}`)).toMatchObject({ state: "open", failures: 3 });
  });
});

describe("duplicates: RouterOS's wording and any 400 whose slot reads back as ours", () => {
  for (const detail of [
    "failure: already have such slot",
    "failure: item with this slot already exists",
    "failure: could not add disk",
  ]) {
    test(`a lost race answered "${detail}": OK with one disk, ALREADY_EXISTS for another size`, async () => {
      const { c, sim } = await setup({ duplicateDetail: detail });
      const other = await second(sim);
      // Both controllers read the slot as absent before either adds: the race the Go driver had too.
      sim.faults.add({ kind: "latency", ms: 300, method: "GET", path: "/rest/disk", times: 2 });
      const same = await Promise.all([
        codeOf(c.ctl.CreateVolume(createReq("race"))),
        codeOf(other.ctl.CreateVolume(createReq("race"))),
      ]);
      expect(same).toEqual([Code.OK, Code.OK]);
      expect(slotsNamed(sim, "race")).toHaveLength(1);

      sim.faults.add({ kind: "latency", ms: 300, method: "GET", path: "/rest/disk", times: 2 });
      const sizes = await Promise.all([
        codeOf(c.ctl.CreateVolume(createReq("race-size", 1))),
        codeOf(other.ctl.CreateVolume(createReq("race-size", 2))),
      ]);
      expect(sizes.filter((x) => x === Code.OK)).toHaveLength(1);
      expect(sizes).toContain(Code.ALREADY_EXISTS);
      expect(slotsNamed(sim, "race-size")).toHaveLength(1);
    });
  }

  test("400 Session closed on an add that was applied: read back, OK, the add sent once", async () => {
    const { c, sim } = await setup();
    sim.faults.add({ kind: "session-closed", method: "PUT", path: "/rest/disk", times: 1 });
    expect(await codeOf(c.ctl.CreateVolume(createReq("cut-add")))).toBe(Code.OK);
    expect(slotsNamed(sim, "cut-add")).toHaveLength(1);
    expect(copyFroms(sim)).toBe(1);
  });
});

describe("copies: their own deadline, synchronous, verified from documented fields, never sent twice", () => {
  test("a copy slower than the request deadline but within the copy deadline: one CreateSnapshot, ready", async () => {
    const { c, sim } = await setup({ copyMs: 3 * REQUEST_MS, copyTimeoutMs: 10 * REQUEST_MS });
    const vol = (await c.ctl.CreateVolume(createReq("slow-src"))).volume.volume_id;
    const r = await c.ctl.CreateSnapshot({ name: "slow-snap", source_volume_id: vol });
    expect(r.snapshot.ready_to_use).toBe(true);
    expect(Number(r.snapshot.creation_time.seconds)).toBeGreaterThan(0);
    expect(copyFroms(sim)).toBe(2);
  });

  test("without status: a copy still running is not ready, however its row looks; done when its file has the source's size", async () => {
    const { c, sim } = await setup({ fields: { status: false }, copyMs: 1_500, copyTimeoutMs: 300 });
    const vol = (await c.ctl.CreateVolume(createReq("nostatus-src"))).volume.volume_id;
    const cut = () => c.ctl.CreateSnapshot({ name: "nostatus-snap", source_volume_id: vol });
    expect((await cut()).snapshot.ready_to_use).toBe(false);
    expect((await retryWhile(cut, (r) => !r.snapshot.ready_to_use)).snapshot.ready_to_use).toBe(true);
    const file = sim.state.files().find((x) => x.name?.endsWith(`${snapshotIdForName("nostatus-snap")}.img`));
    expect(Number(file?.size)).toBe(GiB);
    expect(copyFroms(sim)).toBe(2);
  });

  test("the router's own cut (400 Session closed) on a copy: ABORTED while it runs, then the clone, copy-from sent once", async () => {
    const { c, sim } = await setup({ copyMs: 1_200, serverTimeoutMs: 300, copyTimeoutMs: 5_000 });
    const src = (await c.ctl.CreateVolume(createReq("cut-src"))).volume.volume_id;
    const req = { ...createReq("cut-clone"), volume_content_source: { volume: { volume_id: src } } };
    expect(await codeOf(c.ctl.CreateVolume(req))).toBe(Code.ABORTED);
    expect(
      await retryWhile(
        () => codeOf(c.ctl.CreateVolume(req)),
        (code) => code === Code.ABORTED,
      ),
    ).toBe(Code.OK);
    expect(slotsNamed(sim, "cut-clone")).toHaveLength(1);
    expect(copyFroms(sim)).toBe(2);
  });

  test("a restore larger than its snapshot, cut by the router: ABORTED while it copies (not ALREADY_EXISTS), then grown", async () => {
    const { c, sim } = await setup({ copyMs: 1_200, serverTimeoutMs: 300, copyTimeoutMs: 5_000 });
    const vol = (await c.ctl.CreateVolume(createReq("big-src"))).volume.volume_id;
    const snap = (
      await retryWhile(
        () => c.ctl.CreateSnapshot({ name: "big-snap", source_volume_id: vol }),
        (r) => !r.snapshot.ready_to_use,
      )
    ).snapshot;
    const req = {
      ...createReq("big-restore", 2),
      volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } },
    };
    expect(await codeOf(c.ctl.CreateVolume(req))).toBe(Code.ABORTED);
    expect(
      await retryWhile(
        () => codeOf(c.ctl.CreateVolume(req)),
        (code) => code === Code.ABORTED,
      ),
    ).toBe(Code.OK);
    expect(Number(slotsNamed(sim, "big-restore")[0]!["file-size"])).toBe(2 * GiB);
    expect(copyFroms(sim)).toBe(3);
  });

  test("a copy whose row appears only when done, cut by the router: copy-from is never sent a second time", async () => {
    const { c, sim } = await setup({
      copyMs: 1_200,
      serverTimeoutMs: 300,
      copyTimeoutMs: 5_000,
      copyRowAppears: "when-done",
    });
    const vol = (await c.ctl.CreateVolume(createReq("late-src"))).volume.volume_id;
    const cut = () => codeOf(c.ctl.CreateSnapshot({ name: "late-snap", source_volume_id: vol }));
    expect(await cut()).toBe(Code.UNAVAILABLE);
    expect(await retryWhile(cut, (code) => code !== Code.OK)).toBe(Code.OK);
    expect(sim.state.disks().filter((d) => d.slot === snapshotIdForName("late-snap"))).toHaveLength(1);
    expect(copyFroms(sim)).toBe(2);
  });
});

describe("a copy with an unknown outcome survives a controller restart", () => {
  test("the restarted controller reads back and waits; it never sends the copy-from again", async () => {
    const { f, c, sim } = await setup({
      copyMs: 1_500,
      serverTimeoutMs: 300,
      copyTimeoutMs: 5_000,
      copyRowAppears: "when-done",
    });
    const vol = (await c.ctl.CreateVolume(createReq("restart-src"))).volume.volume_id;
    expect(await codeOf(c.ctl.CreateSnapshot({ name: "restart-snap", source_volume_id: vol }))).toBe(Code.UNAVAILABLE);
    // The same state dir, a new process: nothing of the first one's memory.
    const restarted = routerOsBackendOn(
      sim,
      { requestTimeoutMs: REQUEST_MS, readAttempts: 1, copyTimeoutMs: 5_000 },
      f.dir,
    );
    const id = snapshotIdForName("restart-snap");
    const snap = await retryWhile(
      () => restarted.backend.createSnapshot(id, vol, "/storage-pool/metal-csi").catch(() => null),
      (s) => !s?.readyToUse,
    );
    expect(snap?.readyToUse).toBe(true);
    expect(copyFroms(sim)).toBe(2);
  });
});

describe("fields the /disk reference does not list", () => {
  test("no creation-time: snapshot creation_time from the /file entry, never 0, the same on every read", async () => {
    const { c } = await setup({ fields: { creationTime: false } });
    const vol = (await c.ctl.CreateVolume(createReq("ct-src"))).volume.volume_id;
    const snap = (await c.ctl.CreateSnapshot({ name: "ct-snap", source_volume_id: vol })).snapshot;
    const t = Number(snap.creation_time.seconds);
    expect(t).toBeGreaterThan(Date.now() / 1000 - 3600);
    const listed = (await c.ctl.ListSnapshots({})).entries.map((e: any) => Number(e.snapshot.creation_time.seconds));
    expect(listed).toEqual([t]);
  });

  test("no comment: metadata on the state dir; publications survive a controller restart", async () => {
    const { f, c, sim } = await setup({ fields: { comment: false } });
    const id = (await c.ctl.CreateVolume(createReq("nc"))).volume.volume_id;
    expect(f.backend.features!().comment).toBe("no");
    const node = "node-a/nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001";
    expect(
      await codeOf(c.ctl.ControllerPublishVolume({ volume_id: id, node_id: node, volume_capability: mountCap() })),
    ).toBe(Code.OK);
    // A new controller process on the same state dir (a restart) knows the publication.
    const restarted = routerOsBackendOn(sim, { requestTimeoutMs: REQUEST_MS }, f.dir);
    const d = await restarted.backend.getDisk(id);
    expect(d?.meta.publishedTo).toEqual([node]);
    // And idempotency still holds: the same request is OK, another size ALREADY_EXISTS.
    expect(await codeOf(c.ctl.CreateVolume(createReq("nc")))).toBe(Code.OK);
    expect(await codeOf(c.ctl.CreateVolume(createReq("nc", 3)))).toBe(Code.ALREADY_EXISTS);
    expect(sim.state.disks().every((r) => !("comment" in r))).toBe(true);
    console.log(`writes for one create + one publish without comment: ${writes(sim)}`);
  });

  test("a router whose /system/resource cannot be read is still ready: the version is only for the log", async () => {
    const { f, c, sim } = await setup();
    sim.faults.add({ kind: "status", status: 404, path: "/rest/system/resource" });
    const fresh = routerOsBackendOn(sim, { requestTimeoutMs: REQUEST_MS });
    cleanups.push(() => {
      rmSync(fresh.stateDir, { recursive: true, force: true });
    });
    await fresh.backend.probe();
    expect(fresh.backend.features().version).toBeUndefined();
    expect(await ready(c)).toBe(true);
    expect(f.breakers.get(`backend:${sim.address}`)?.state ?? "closed").toBe("closed");
  });

  test("detection at start-up reads the router's version and which fields its rows have", async () => {
    const { f, c } = await setup({ fields: { creationTime: false, status: false } });
    await c.ctl.CreateVolume(createReq("detect"));
    // A fresh controller on this router detects with its first (start-up) check.
    const other = routerOsBackendOn(f.sim!, { requestTimeoutMs: REQUEST_MS });
    cleanups.push(() => {
      rmSync(other.stateDir, { recursive: true, force: true });
    });
    await other.backend.probe();
    expect(other.backend.features()).toMatchObject({
      version: "7.16 (stable)",
      creationTime: "no",
      status: "no",
      comment: "yes",
    });
  });
});
