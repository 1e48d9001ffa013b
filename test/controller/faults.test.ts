import { afterEach, describe, expect, test } from "bun:test";
import { volumeIdForName } from "../../src/backends/ids.ts";
import { routerOsFixture, type BackendFixture, type RouterOsFixtureOptions } from "../backends/harness.ts";
import { Code, GiB, codeOf, mountCap, retryWhile, startController, type ControllerFixture } from "./harness.ts";

/**
 * The fault matrix against the RouterOS simulator, over real gRPC. Request deadline 400 ms, two read
 * attempts: every RPC below must end well inside DEADLINE_MS, however the RDS misbehaves.
 */
const REQUEST_MS = 400;
const DEADLINE_MS = 5_000;

let f: BackendFixture | undefined;
let c: ControllerFixture | undefined;
afterEach(async () => {
  await c?.close();
  await f?.close();
  c = f = undefined;
});

async function setup(o: RouterOsFixtureOptions = {}) {
  f = await routerOsFixture({ requestTimeoutMs: REQUEST_MS, readAttempts: 2, ...o });
  c = await startController(f);
  return { f, c, sim: f.sim! };
}

const createReq = (name: string) => ({
  name,
  capacity_range: { required_bytes: GiB },
  volume_capabilities: [mountCap()],
  parameters: {},
});

/** Code and duration of one RPC. */
async function timed(p: Promise<unknown>) {
  const t = performance.now();
  const code = await codeOf(p);
  return { code, ms: performance.now() - t };
}

const slotsNamed = (sim: NonNullable<BackendFixture["sim"]>, name: string) =>
  sim.state.disks().filter((d) => d.slot === volumeIdForName(name));
const puts = (sim: NonNullable<BackendFixture["sim"]>) => sim.state.requests().filter((r) => r.method === "PUT").length;

describe("fault matrix (RouterOS simulator)", () => {
  test("hung reads: the RPC ends UNAVAILABLE within its deadline", async () => {
    const { c, sim } = await setup();
    sim.faults.add({ kind: "hang", method: "GET", path: "/rest/disk" });
    const r = await timed(c.ctl.ControllerGetVolume({ volume_id: volumeIdForName("x") }));
    expect(r.code).toBe(Code.UNAVAILABLE);
    expect(r.ms).toBeLessThan(DEADLINE_MS);
  });

  test("a read that fails once (5xx, reset) is retried and the RPC succeeds", async () => {
    const { c, sim } = await setup();
    sim.faults.add({ kind: "status", status: 503, method: "GET", path: "/rest/disk", times: 1 });
    expect(await codeOf(c.ctl.CreateVolume(createReq("read-5xx")))).toBe(Code.OK);
    sim.faults.add({ kind: "reset", method: "GET", path: "/rest/disk", times: 1 });
    expect(await codeOf(c.ctl.ControllerGetVolume({ volume_id: volumeIdForName("read-5xx") }))).toBe(Code.OK);
    sim.faults.add({ kind: "latency", ms: 100, method: "GET", times: 3 });
    expect(await codeOf(c.ctl.ControllerGetVolume({ volume_id: volumeIdForName("read-5xx") }))).toBe(Code.OK);
  });

  test("lost response after the add was applied: success, one disk, the add never sent twice", async () => {
    const { c, sim } = await setup();
    sim.faults.add({ kind: "lost-response", method: "PUT", path: "/rest/disk", times: 1 });
    const r = await timed(c.ctl.CreateVolume(createReq("lost-add")));
    expect(r.code).toBe(Code.OK);
    expect(r.ms).toBeLessThan(DEADLINE_MS);
    expect(slotsNamed(sim, "lost-add")).toHaveLength(1);
    expect(puts(sim)).toBe(1);
    expect(await codeOf(c.ctl.CreateVolume(createReq("lost-add")))).toBe(Code.OK);
    expect(slotsNamed(sim, "lost-add")).toHaveLength(1);
  });

  for (const fault of [
    { kind: "hang" as const, name: "hung add" },
    { kind: "status" as const, status: 500, name: "5xx on add" },
    { kind: "reset" as const, name: "connection reset on add" },
  ]) {
    test(`${fault.name}: UNAVAILABLE within the deadline; the retried create makes exactly one disk`, async () => {
      const { c, sim } = await setup();
      const clear = sim.faults.add({ ...fault, method: "PUT", path: "/rest/disk", times: 1 });
      const r = await timed(c.ctl.CreateVolume(createReq(`w-${fault.kind}`)));
      expect(r.code).toBe(Code.UNAVAILABLE);
      expect(r.ms).toBeLessThan(DEADLINE_MS);
      expect(slotsNamed(sim, `w-${fault.kind}`)).toHaveLength(0);
      clear();
      expect(await codeOf(c.ctl.CreateVolume(createReq(`w-${fault.kind}`)))).toBe(Code.OK);
      expect(slotsNamed(sim, `w-${fault.kind}`)).toHaveLength(1);
      expect(sim.state.files().filter((x) => x.name?.includes(volumeIdForName(`w-${fault.kind}`)))).toHaveLength(1);
    });
  }

  test("an add applied after the client gave up is found by the retry, not duplicated", async () => {
    const { c, sim } = await setup();
    sim.faults.add({ kind: "latency", ms: REQUEST_MS * 2, method: "PUT", path: "/rest/disk", times: 1 });
    const r = await timed(c.ctl.CreateVolume(createReq("late-add")));
    expect(r.code).toBe(Code.UNAVAILABLE);
    // Wait for the simulator to apply the late add, then the CO's retry.
    for (let i = 0; i < 100 && slotsNamed(sim, "late-add").length === 0; i++) await Bun.sleep(20);
    expect(slotsNamed(sim, "late-add")).toHaveLength(1);
    expect(await codeOf(c.ctl.CreateVolume(createReq("late-add")))).toBe(Code.OK);
    expect(slotsNamed(sim, "late-add")).toHaveLength(1);
    expect(puts(sim)).toBe(1);
  });

  test("pool full: RESOURCE_EXHAUSTED, and it does not open the breaker", async () => {
    const { f, c, sim } = await setup();
    sim.faults.add({ kind: "pool-full", method: "PUT", path: "/rest/disk" });
    for (let i = 0; i < 4; i++)
      expect(await codeOf(c.ctl.CreateVolume(createReq(`full-${i}`)))).toBe(Code.RESOURCE_EXHAUSTED);
    expect(f.breakers.isOpen(`backend:${sim.address}`)).toBe(false);
    sim.faults.clear();
    sim.state.setPoolBytes(2 * GiB);
    expect(
      await codeOf(c.ctl.CreateVolume({ ...createReq("full-real"), capacity_range: { required_bytes: 3 * GiB } })),
    ).toBe(Code.RESOURCE_EXHAUSTED);
    expect(sim.state.disks()).toHaveLength(0);
  });

  test("lost response on remove: DeleteVolume succeeds and disk and file are gone", async () => {
    const { c, sim } = await setup();
    const id = (await c.ctl.CreateVolume(createReq("lost-remove"))).volume.volume_id;
    sim.faults.add({ kind: "lost-response", method: "DELETE", path: "/rest/disk", times: 1 });
    expect(await codeOf(c.ctl.DeleteVolume({ volume_id: id }))).toBe(Code.OK);
    expect(sim.state.disks()).toHaveLength(0);
    expect(sim.state.files()).toHaveLength(0);
  });

  test("a delete that died between disk and file removal is finished by the retry", async () => {
    const { c, sim } = await setup();
    const id = (await c.ctl.CreateVolume(createReq("half-delete"))).volume.volume_id;
    sim.faults.add({ kind: "status", status: 500, method: "DELETE", path: "/rest/file", times: 1 });
    expect(await codeOf(c.ctl.DeleteVolume({ volume_id: id }))).toBe(Code.UNAVAILABLE);
    expect(sim.state.disks()).toHaveLength(0);
    expect(sim.state.files()).toHaveLength(1);
    expect(await codeOf(c.ctl.DeleteVolume({ volume_id: id }))).toBe(Code.OK);
    expect(sim.state.files()).toHaveLength(0);
  });

  test("consecutive failures open the breaker: RPCs fail fast, nothing reaches the RDS, Probe says not ready", async () => {
    const { f, c, sim } = await setup({ breakerThreshold: 3 });
    expect((await c.identity.Probe({})).ready.value).toBe(true);
    sim.faults.add({ kind: "status", status: 500 });
    for (let i = 0; i < 3; i++)
      expect(await codeOf(c.ctl.ControllerGetVolume({ volume_id: volumeIdForName("b") }))).toBe(Code.UNAVAILABLE);
    expect(f.breakers.isOpen(`backend:${sim.address}`)).toBe(true);
    const seen = sim.state.requests().length;
    let message = "";
    const t = performance.now();
    try {
      await c.ctl.CreateVolume(createReq("while-open"));
    } catch (e) {
      message = (e as Error).message;
      expect((e as { code: number }).code).toBe(Code.UNAVAILABLE);
    }
    expect(performance.now() - t).toBeLessThan(DEADLINE_MS);
    expect(message).toMatch(/circuit breaker backend:127\.0\.0\.1:\d+ is open/);
    expect(sim.state.requests().length).toBe(seen);
    const probe = await c.identity.Probe({});
    expect(probe.ready.value).toBe(false);
    sim.faults.clear();
    f.breakers.reset(`backend:${sim.address}`);
    expect((await c.identity.Probe({})).ready.value).toBe(true);
    expect(await codeOf(c.ctl.CreateVolume(createReq("after-reset")))).toBe(Code.OK);
  });

  test("a copy slower than the copy deadline: ABORTED while copying, then the same volume, once", async () => {
    const { c, sim } = await setup({ copyMs: 1_500, copyTimeoutMs: 200 });
    const src = (await c.ctl.CreateVolume(createReq("copy-src"))).volume.volume_id;
    const req = { ...createReq("copy-dst"), volume_content_source: { volume: { volume_id: src } } };
    const first = await timed(c.ctl.CreateVolume(req));
    expect(first.code).toBe(Code.ABORTED);
    expect(first.ms).toBeLessThan(DEADLINE_MS);
    expect(slotsNamed(sim, "copy-dst")).toHaveLength(1);
    expect(slotsNamed(sim, "copy-dst")[0]!.status).toBe("copying");
    expect(
      await retryWhile(
        () => codeOf(c.ctl.CreateVolume(req)),
        (code) => code === Code.ABORTED,
      ),
    ).toBe(Code.OK);
    expect(slotsNamed(sim, "copy-dst")).toHaveLength(1);
    expect(puts(sim)).toBe(2);
  });
});
