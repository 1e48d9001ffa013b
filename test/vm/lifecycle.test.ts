/**
 * Scenario 1 on a real kernel: Create → ControllerPublish → NodeStage (real nvme connect, fsck -n,
 * mkfs, mount) → NodePublish → write + O_DIRECT read back → stats → ControllerExpand + NodeExpand
 * with and without the target's namespace-changed event → unpublish → unstage (the NQN is
 * disconnected) → Delete (the subsystem is gone from the target).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import {
  Code,
  deviceOf,
  GiB,
  HOST_NQN,
  lookup,
  MiB,
  mountCap,
  mountsAt,
  okValue,
  rpc,
  sh,
  startCluster,
  volName,
  waitFor,
  type Cluster,
} from "./harness.ts";

const S = "scenario1";
let c: Cluster;
const name = volName("life");
let volumeId = "";
let nqn = "";
let volumeContext: Record<string, string> = {};
let publishContext: Record<string, string> = {};
let staging = "";
let targetPath = "";
let written = "";

beforeAll(async () => {
  c = await startCluster("life");
});
afterAll(async () => {
  await c?.stop();
});

/** Filesystem size in bytes as df sees it at a mounted path. */
const fsBytes = (path: string) => Number(sh(["df", "-B1", "--output=size", path]).stdout.split("\n")[1]);

describe("scenario 1: a volume's life over real NVMe/TCP", () => {
  test("CreateVolume exports an nvmet subsystem with the row's NQN on the row's port", async () => {
    const r = okValue(
      await rpc(
        S,
        "CreateVolume",
        c.ctl.controller.CreateVolume({
          name,
          capacity_range: { required_bytes: GiB },
          volume_capabilities: [mountCap("ext4")],
          parameters: {},
        }),
      ),
    );
    volumeId = r.volume.volume_id;
    volumeContext = r.volume.volume_context;
    nqn = volumeContext.nqn!;
    expect(nqn.startsWith("nqn.2000-02.com.mikrotik:pvc-")).toBe(true);
    expect(c.target.subsystems()).toContain(nqn);
    expect(existsSync(`/sys/kernel/config/nvmet/ports/4420/subsystems/${nqn}`)).toBe(true);
  });

  test("ControllerPublish restricts the export to this node's host NQN", async () => {
    const r = okValue(
      await rpc(
        S,
        "ControllerPublishVolume",
        c.ctl.controller.ControllerPublishVolume({
          volume_id: volumeId,
          node_id: c.nodeId,
          volume_capability: mountCap("ext4"),
          readonly: false,
          volume_context: volumeContext,
        }),
      ),
    );
    publishContext = r.publish_context ?? {};
    expect(readdirSync(`/sys/kernel/config/nvmet/subsystems/${nqn}/allowed_hosts`)).toEqual([HOST_NQN]);
    expect(readFileSync(`/sys/kernel/config/nvmet/subsystems/${nqn}/attr_allow_any_host`, "utf8").trim()).toBe("0");
  });

  test("NodeStage connects, formats and mounts the namespace of this NQN", async () => {
    staging = c.stagingPath(name);
    okValue(
      await rpc(
        S,
        "NodeStageVolume",
        c.node.node.NodeStageVolume({
          volume_id: volumeId,
          staging_target_path: staging,
          volume_capability: mountCap("ext4"),
          volume_context: volumeContext,
          publish_context: publishContext,
        }),
      ),
    );
    const dev = await deviceOf(nqn);
    expect(dev).not.toBeNull();
    expect(dev!.sizeBytes).toBe(GiB);
    expect((await lookup(nqn)).state).toBe("found");
    const m = mountsAt(staging);
    expect(m.map((x) => x.source)).toEqual([dev!.path]);
    expect(sh(["blkid", "-o", "value", "-s", "TYPE", dev!.path]).stdout.trim()).toBe("ext4");
  });

  test("NodePublish bind-mounts; a write reads back through O_DIRECT from the target", async () => {
    targetPath = c.targetPath(name);
    okValue(
      await rpc(
        S,
        "NodePublishVolume",
        c.node.node.NodePublishVolume({
          volume_id: volumeId,
          staging_target_path: staging,
          target_path: targetPath,
          volume_capability: mountCap("ext4"),
          readonly: false,
          volume_context: volumeContext,
          publish_context: publishContext,
        }),
      ),
    );
    expect(mountsAt(targetPath).length).toBe(1);
    sh(["dd", "if=/dev/urandom", `of=${c.dir}/payload`, "bs=1M", "count=4", "status=none"]);
    written = sh(["sha256sum", `${c.dir}/payload`]).stdout.split(" ")[0]!;
    sh(["dd", `if=${c.dir}/payload`, `of=${targetPath}/data`, "bs=1M", "oflag=direct", "conv=fsync", "status=none"]);
    sh(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"]);
    const back = sh(["sh", "-c", `dd if='${targetPath}/data' bs=1M iflag=direct status=none | sha256sum`]).stdout.split(
      " ",
    )[0];
    expect(back).toBe(written);
  });

  test("NodeGetVolumeStats: healthy, with the filesystem's usage", async () => {
    const r = okValue(
      await rpc(
        S,
        "NodeGetVolumeStats",
        c.node.node.NodeGetVolumeStats({ volume_id: volumeId, volume_path: targetPath }),
      ),
    );
    expect(r.volume_condition).toEqual({ abnormal: false, message: "healthy" });
    const bytes = r.usage.find((u: { unit: string }) => u.unit === "BYTES");
    expect(Number(bytes.total)).toBeGreaterThan(900 * MiB);
    expect(Number(bytes.used)).toBeGreaterThan(4 * MiB - 1);
  });

  test("expand with the target's namespace-changed event: ControllerExpand, NodeExpand grows the filesystem", async () => {
    const before = fsBytes(staging);
    const r = okValue(
      await rpc(
        S,
        "ControllerExpandVolume",
        c.ctl.controller.ControllerExpandVolume({
          volume_id: volumeId,
          capacity_range: { required_bytes: 2 * GiB },
          volume_capability: mountCap("ext4"),
        }),
      ),
    );
    expect(Number(r.capacity_bytes)).toBe(2 * GiB);
    // The event makes the host rescan on its own: the device grows before the node is asked.
    await waitFor(
      "the namespace-changed event to grow the device",
      async () => (await deviceOf(nqn))?.sizeBytes === 2 * GiB,
      10_000,
    );
    const n = okValue(
      await rpc(
        S,
        "NodeExpandVolume(AEN)",
        c.node.node.NodeExpandVolume({
          volume_id: volumeId,
          volume_path: targetPath,
          capacity_range: { required_bytes: 2 * GiB },
          staging_target_path: staging,
          volume_capability: mountCap("ext4"),
        }),
      ),
    );
    expect(Number(n.capacity_bytes)).toBe(2 * GiB);
    expect(fsBytes(staging)).toBeGreaterThan(before + 900 * MiB);
  });

  test("expand without an event: the kernel keeps the old size until the node rescans; NodeExpand rescans and grows", async () => {
    c.target.growWithoutAen(nqn);
    const before = fsBytes(staging);
    okValue(
      await rpc(
        S,
        "ControllerExpandVolume",
        c.ctl.controller.ControllerExpandVolume({
          volume_id: volumeId,
          capacity_range: { required_bytes: 3 * GiB },
          volume_capability: mountCap("ext4"),
        }),
      ),
    );
    // Proof that no event came: a second later the host still sees the old size.
    await Bun.sleep(1_000);
    expect((await deviceOf(nqn))!.sizeBytes).toBe(2 * GiB);
    const n = okValue(
      await rpc(
        S,
        "NodeExpandVolume(no AEN)",
        c.node.node.NodeExpandVolume({
          volume_id: volumeId,
          volume_path: targetPath,
          capacity_range: { required_bytes: 3 * GiB },
          staging_target_path: staging,
          volume_capability: mountCap("ext4"),
        }),
      ),
    );
    expect(Number(n.capacity_bytes)).toBe(3 * GiB);
    expect((await deviceOf(nqn))!.sizeBytes).toBe(3 * GiB);
    expect(fsBytes(staging)).toBeGreaterThan(before + 900 * MiB);
  });

  test("the data written before the grows is intact", () => {
    sh(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"]);
    const back = sh(["sh", "-c", `dd if='${targetPath}/data' bs=1M iflag=direct status=none | sha256sum`]).stdout.split(
      " ",
    )[0];
    expect(back).toBe(written);
  });

  test("NodeUnpublish and NodeUnstage: unmounted, the NQN disconnected", async () => {
    okValue(
      await rpc(
        S,
        "NodeUnpublishVolume",
        c.node.node.NodeUnpublishVolume({ volume_id: volumeId, target_path: targetPath }),
      ),
    );
    expect(mountsAt(targetPath).length).toBe(0);
    okValue(
      await rpc(
        S,
        "NodeUnstageVolume",
        c.node.node.NodeUnstageVolume({ volume_id: volumeId, staging_target_path: staging }),
      ),
    );
    expect(mountsAt(staging).length).toBe(0);
    expect((await lookup(nqn)).state).toBe("absent");
  });

  test("ControllerUnpublish and DeleteVolume: the subsystem is gone from the target", async () => {
    okValue(
      await rpc(
        S,
        "ControllerUnpublishVolume",
        c.ctl.controller.ControllerUnpublishVolume({ volume_id: volumeId, node_id: c.nodeId }),
      ),
    );
    okValue(await rpc(S, "DeleteVolume", c.ctl.controller.DeleteVolume({ volume_id: volumeId })));
    expect(c.target.subsystems()).not.toContain(nqn);
    expect(existsSync(`/sys/kernel/config/nvmet/subsystems/${nqn}`)).toBe(false);
    const again = await rpc(S, "DeleteVolume(again)", c.ctl.controller.DeleteVolume({ volume_id: volumeId }));
    expect(again.code).toBe(Code.OK);
  });
});
