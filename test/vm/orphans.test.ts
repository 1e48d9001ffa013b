/**
 * Scenario 4: orphans on a real kernel. A managed subsystem removed on the target while connected
 * (its controller reconnects forever to nothing), and a subsystem whose namespace never appears
 * (connected, no block device). Stage answers within its deadline; gc lists exactly the orphans and
 * --force disconnects exactly those, leaving a healthy staged volume alone.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  Code,
  connectByHand,
  controllerStates,
  GiB,
  gc,
  lookup,
  mountCap,
  mountsAt,
  NQN_PREFIX,
  NVME_PORT,
  okValue,
  provision,
  rpc,
  startCluster,
  waitFor,
  type Cluster,
  type Staged,
} from "./harness.ts";

const S = "scenario4";
let c: Cluster;
let healthy: Staged;
let removedNqn = "";
const EMPTY_ID = "pvc-00000000-0000-4000-8000-0000000000e4";
const EMPTY_NQN = `${NQN_PREFIX}${EMPTY_ID.slice("pvc-".length)}`;

beforeAll(async () => {
  // A namespace that never appears costs two device waits (connect, reconnect once): keep them short.
  c = await startCluster("orphans", { nodeFlags: ["--device-timeout", "5s"] });
  healthy = await provision(c, S, "healthy");
});
afterAll(async () => {
  await c?.stop();
});

describe("scenario 4: orphans", () => {
  test("a connected managed subsystem removed on the target: its controller is left reconnecting", async () => {
    const v = okValue(
      await rpc(
        S,
        "CreateVolume",
        c.ctl.controller.CreateVolume({
          name: "pvc-vm-orphan-removed",
          capacity_range: { required_bytes: GiB },
          volume_capabilities: [mountCap()],
          parameters: {},
        }),
      ),
    ).volume;
    removedNqn = v.volume_context.nqn;
    await connectByHand(removedNqn, NVME_PORT, ["-l", "-1", "-c", "2"]);
    c.target.dropSubsystem(removedNqn);
    await waitFor(
      "the removed subsystem's controller to leave live",
      async () => (await controllerStates(removedNqn)).every((s) => !s.endsWith(":live")),
      30_000,
    );
  });

  test("a namespace that never appears: NodeStage answers UNAVAILABLE within its deadline and leaves the connection", async () => {
    c.target.exportEmpty(EMPTY_NQN, NVME_PORT);
    const name = "pvc-vm-orphan-empty";
    const r = await rpc(
      S,
      "NodeStageVolume(no namespace)",
      c.node.node.NodeStageVolume(
        {
          volume_id: EMPTY_ID,
          staging_target_path: c.stagingPath(name),
          volume_capability: mountCap(),
          volume_context: { nqn: EMPTY_NQN, nvmeAddress: "127.0.0.1", nvmePort: String(NVME_PORT) },
          publish_context: {},
        },
        { deadlineMs: 90_000 },
      ),
    );
    expect(r.code).toBe(Code.UNAVAILABLE);
    expect(r.details).toContain("no block device appeared within 5000 ms");
    expect((await lookup(EMPTY_NQN)).state).toBe("orphaned");
  });

  test("gc lists exactly the orphans; --force disconnects exactly those", async () => {
    const plan = gc(c, { referenced: [healthy.volumeId] });
    console.log(`[scenario4] gc plan: ${JSON.stringify(plan.candidates)}`);
    const nvmeIds = (xs: { kind: string; id: string }[]) =>
      xs
        .filter((x) => /subsystem/.test(x.kind))
        .map((x) => x.id)
        .sort();
    expect(nvmeIds(plan.candidates)).toEqual([EMPTY_NQN, removedNqn].sort());
    // The failed stage's record is the third orphan; nothing of the healthy volume is listed.
    expect(plan.candidates.filter((x) => !/subsystem/.test(x.kind)).map((x) => `${x.kind} ${x.id}`)).toEqual([
      `stale-record ${EMPTY_ID}`,
    ]);
    const forced = gc(c, { force: true, referenced: [healthy.volumeId] });
    console.log(`[scenario4] gc results: ${JSON.stringify(forced.results)}`);
    expect(nvmeIds((forced.results ?? []).filter((x) => x.status === "done"))).toEqual([EMPTY_NQN, removedNqn].sort());
    expect((await lookup(EMPTY_NQN)).state).toBe("absent");
    expect((await lookup(removedNqn)).state).toBe("absent");
    expect(await controllerStates(healthy.nqn)).toEqual([expect.stringMatching(/:live$/)]);
    expect(mountsAt(healthy.staging).length).toBe(1);
    expect(mountsAt(healthy.target).length).toBe(1);
  });
});
