/**
 * Scenario 2: restage three times. Other connections take the freed controller numbers in
 * between, so the kernel gives the volume a new controller each time; the node finds the device by
 * NQN every time and the data survives.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  connectByHand,
  directSha,
  lookup,
  mountsAt,
  okValue,
  provision,
  rpc,
  seedExport,
  sh,
  stage,
  startCluster,
  teardown,
  type Cluster,
  type Staged,
} from "./harness.ts";

const S = "scenario2";
let c: Cluster;
let v: Staged;
const fillers: string[] = [];

beforeAll(async () => {
  c = await startCluster("restage");
  v = await provision(c, S, "restage");
});
afterAll(async () => {
  for (const nqn of fillers) sh(["nvme", "disconnect", "-n", nqn], { allowFail: true });
  await c?.stop();
});

async function controllerOf(nqn: string) {
  const l = await lookup(nqn);
  if (l.state !== "found") throw new Error(`${nqn} is ${l.state}`);
  return { controller: l.subsystem.controllers[0]!.name, device: `/dev/${l.namespace.name}` };
}

describe("scenario 2: restage ×3 over real NVMe/TCP", () => {
  test("each restage gets a new controller number; the mount is always the device of this NQN; the data survives", async () => {
    sh([
      "dd",
      "if=/dev/urandom",
      `of=${v.target}/data`,
      "bs=1M",
      "count=2",
      "oflag=direct",
      "conv=fsync",
      "status=none",
    ]);
    const want = directSha(`${v.target}/data`);
    const uuid = sh(["blkid", "-o", "value", "-s", "UUID", (await controllerOf(v.nqn)).device]).stdout.trim();
    const seen = [(await controllerOf(v.nqn)).controller];
    for (let round = 1; round <= 3; round++) {
      okValue(await teardown(c, S, v));
      expect((await lookup(v.nqn)).state).toBe("absent");
      // Another connection takes the number the volume just freed.
      const filler = `nqn.2000-02.com.mikrotik:vm-filler-${round}`;
      seedExport(c, `vm-filler-${round}`, filler);
      await connectByHand(filler);
      fillers.push(filler);
      okValue(await rpc(S, `NodeStageVolume(restage ${round})`, stage(c, v)));
      okValue(
        await rpc(
          S,
          `NodePublishVolume(restage ${round})`,
          c.node.node.NodePublishVolume({
            volume_id: v.volumeId,
            staging_target_path: v.staging,
            target_path: v.target,
            volume_capability: {
              mount: { fs_type: "ext4", mount_flags: [] },
              access_mode: { mode: "SINGLE_NODE_WRITER" },
            },
            readonly: false,
            volume_context: v.volumeContext,
            publish_context: v.publishContext,
          }),
        ),
      );
      const now = await controllerOf(v.nqn);
      expect(seen).not.toContain(now.controller);
      seen.push(now.controller);
      expect(mountsAt(v.staging).map((m) => m.source)).toEqual([now.device]);
      expect(sh(["blkid", "-o", "value", "-s", "UUID", now.device]).stdout.trim()).toBe(uuid);
      expect(directSha(`${v.target}/data`)).toBe(want);
    }
    console.log(`[scenario2] controllers over the restages: ${seen.join(" → ")}`);
  });
});
