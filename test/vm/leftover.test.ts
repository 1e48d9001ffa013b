/**
 * Scenario 6b: a connection for the volume's NQN is left over (a crashed earlier stage, no staging
 * record) and its controller is `connecting` because the target is unreachable when NodeStage
 * arrives. blkid on that device would sit in D state; the node must answer UNAVAILABLE without
 * touching it, and stage normally once the controller is live again.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  Code,
  controllerStates,
  GiB,
  HOST_NQN,
  mountCap,
  mountsAt,
  NVME_PORT,
  okValue,
  rpc,
  sh,
  stage,
  startCluster,
  volName,
  waitFor,
  type Cluster,
  type Staged,
} from "./harness.ts";

const S = "scenario6b";
let c: Cluster;
let v: Staged;

beforeAll(async () => {
  c = await startCluster("leftover");
  const name = volName("leftover");
  const created = okValue(
    await rpc(
      S,
      "CreateVolume",
      c.ctl.controller.CreateVolume({
        name,
        capacity_range: { required_bytes: GiB },
        volume_capabilities: [mountCap()],
        parameters: {},
      }),
    ),
  ).volume;
  okValue(
    await rpc(
      S,
      "ControllerPublishVolume",
      c.ctl.controller.ControllerPublishVolume({
        volume_id: created.volume_id,
        node_id: c.nodeId,
        volume_capability: mountCap(),
        readonly: false,
        volume_context: created.volume_context,
      }),
    ),
  );
  v = {
    name,
    volumeId: created.volume_id,
    nqn: created.volume_context.nqn,
    volumeContext: created.volume_context,
    publishContext: {},
    staging: c.stagingPath(name),
    target: c.targetPath(name),
  };
});
afterAll(async () => {
  c?.target.restorePort(NVME_PORT);
  await c?.stop();
});

describe("scenario 6b: leftover controller in `connecting` at NodeStage", () => {
  test("NodeStage answers UNAVAILABLE naming the state, runs nothing on the device; stages once the controller is live", async () => {
    sh([
      "nvme",
      "connect",
      "-t",
      "tcp",
      "-a",
      "127.0.0.1",
      "-s",
      String(NVME_PORT),
      "-n",
      v.nqn,
      "-q",
      HOST_NQN,
      "-l",
      "-1",
      "-c",
      "2",
    ]);
    await waitFor(
      "the hand-made connection's namespace",
      async () => (await controllerStates(v.nqn)).some((s) => s.endsWith(":live")),
      15_000,
    );
    c.target.removePort(NVME_PORT);
    await waitFor(
      "the controller to leave live",
      async () => (await controllerStates(v.nqn)).every((s) => !s.endsWith(":live")),
      30_000,
    );
    const r = await rpc(S, "NodeStageVolume(connecting)", stage(c, v, mountCap(), 10_000));
    expect(r.code).toBe(Code.UNAVAILABLE);
    expect(r.details).toContain("connecting");
    expect(r.details).toContain("not touching");
    // Nothing was started on the device: no blkid/fsck child is waiting on it.
    expect(sh(["sh", "-c", "ps -eo stat,comm | awk '$1 ~ /^D/ {print $2}'"]).stdout.trim()).toBe("");
    expect(mountsAt(v.staging)).toEqual([]);
    c.target.restorePort(NVME_PORT);
    await waitFor(
      "the controller to reconnect",
      async () => (await controllerStates(v.nqn)).some((s) => s.endsWith(":live")),
      60_000,
    );
    okValue(await rpc(S, "NodeStageVolume(live again)", stage(c, v)));
    expect(mountsAt(v.staging).length).toBe(1);
    okValue(
      await rpc(
        S,
        "NodeUnstageVolume",
        c.node.node.NodeUnstageVolume({ volume_id: v.volumeId, staging_target_path: v.staging }),
      ),
    );
    expect(await controllerStates(v.nqn)).toEqual([]);
  });
});
