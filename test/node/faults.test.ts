import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createFrozenFuse } from "../helpers/frozen-fuse.ts";
import { mountCap, mountsAt, nodeHarness } from "./harness.ts";

const h = nodeHarness();
afterAll(() => h.cleanup());
const MiB = 1024 * 1024;

describe("never format unless certain", () => {
  test("an ext4 image with its superblock zeroed is refused by the health check and never reformatted; 3 failures open the breaker", async () => {
    const id = "pvc-corrupt";
    const file = h.backingFile(64 * MiB);
    execFileSync("mkfs.ext4", ["-q", "-F", file]);
    execFileSync("dd", ["if=/dev/zero", `of=${file}`, "bs=1024", "seek=1", "count=1", "conv=notrunc", "status=none"]);
    const before = readFileSync(file);
    const { staging } = h.paths(id);
    const req = {
      volume_id: id,
      staging_target_path: staging,
      volume_capability: mountCap("ext4"),
      volume_context: { transport: "loop", backingFile: file },
    };
    const errors = [];
    for (let i = 0; i < 4; i++) errors.push(await h.service.NodeStageVolume(req).catch((e) => e));
    expect(errors.slice(0, 3).map((e) => e.kind)).toEqual([
      "failed-precondition",
      "failed-precondition",
      "failed-precondition",
    ]);
    expect(errors[0].message).toContain("refusing to format");
    expect(errors[0].message).toMatch(/fsck\.ext4 -n/);
    expect(errors[3].kind).toBe("unavailable");
    expect(errors[3].message).toContain(`rds-csi breaker reset volume:${id}`);
    expect(errors[3].message).toContain("rds.csi.srvlab.io/reset-circuit-breaker=true");
    expect(mountsAt(staging)).toEqual([]);
    // Byte for byte the same image: nothing wrote to it.
    expect(Buffer.compare(readFileSync(file), before)).toBe(0);
    // Fail dumb: the loop device stays attached for gc to judge.
    expect(execFileSync("losetup", ["-j", file], { encoding: "utf8" })).toContain(file);
    h.deps.breakers.reset(`volume:${id}`);
    await h.service.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
    expect(execFileSync("losetup", ["-j", file], { encoding: "utf8" }).trim()).toBe("");
  }, 60_000);

  test("an unknown signature (data, no filesystem) is never formatted", async () => {
    const id = "pvc-data";
    const file = h.backingFile(32 * MiB);
    execFileSync("dd", [
      "if=/dev/urandom",
      `of=${file}`,
      "bs=4096",
      "count=16",
      "seek=1024",
      "conv=notrunc",
      "status=none",
    ]);
    const { staging } = h.paths(id);
    const e = await h.service
      .NodeStageVolume({
        volume_id: id,
        staging_target_path: staging,
        volume_capability: mountCap("ext4"),
        volume_context: { transport: "loop", backingFile: file },
      })
      .catch((x) => x);
    expect(e.kind).toBe("failed-precondition");
    expect(e.message).toContain("holds data but no recognisable filesystem");
    h.deps.breakers.reset(`volume:${id}`);
    await h.service.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  }, 60_000);
});

describe("storm guard", () => {
  test("with 150 real bind mounts of one source the next mount is refused with RESOURCE_EXHAUSTED", async () => {
    const id = "pvc-storm";
    const file = h.backingFile(32 * MiB);
    const { staging, target } = h.paths(id);
    const ctx = { transport: "loop", backingFile: file };
    await h.service.NodeStageVolume({
      volume_id: id,
      staging_target_path: staging,
      volume_capability: mountCap(),
      volume_context: ctx,
    });
    const binds = join(h.base, "binds");
    for (let i = 0; i < 150; i++) {
      const d = join(binds, String(i));
      mkdirSync(d, { recursive: true });
      execFileSync("mount", ["--bind", staging, d]);
    }
    const e = await h.service
      .NodePublishVolume({
        volume_id: id,
        staging_target_path: staging,
        target_path: target,
        volume_capability: mountCap(),
        readonly: false,
      })
      .catch((x) => x);
    expect(e.kind).toBe("resource-exhausted");
    expect(e.message).toContain("rds-csi doctor");
    expect(e.message).toContain("rds-csi gc");
    expect(mountsAt(target)).toEqual([]);
    for (let i = 0; i < 150; i++) execFileSync("umount", [join(binds, String(i))]);
    expect(
      await h.service.NodePublishVolume({
        volume_id: id,
        staging_target_path: staging,
        target_path: target,
        volume_capability: mountCap(),
        readonly: false,
      }),
    ).toEqual({});
    await h.service.NodeUnpublishVolume({ volume_id: id, target_path: target });
    await h.service.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  }, 60_000);
});

describe("dead mounts", () => {
  test("stats of a published path on a frozen FUSE mount: abnormal within the deadline, no second probe while stuck", async () => {
    const fuse = await createFrozenFuse(join(h.base, "kubelet"));
    try {
      const id = "pvc-frozen";
      // Fabricate a staged volume whose published path is the FUSE mount.
      await h.deps.records.write({
        volume_id: id,
        transport: "loop",
        backing_file: join(h.base, "none.img"),
        staging_path: join(h.base, "frozen-staging"),
        fs_type: "ext4",
        access_type: "mount",
        access_mode: "SINGLE_NODE_WRITER",
        mount_flags: [],
        staged_at: new Date().toISOString(),
        state: "staged",
        created_staging_dir: false,
        publications: [{ target_path: fuse.mountPoint, readonly: false, access_mode: "SINGLE_NODE_WRITER" }],
      });
      const healthy = await h.service.NodeGetVolumeStats({ volume_id: id, volume_path: fuse.mountPoint });
      expect(healthy.volume_condition.abnormal).toBe(false);
      fuse.freeze();
      const startedBefore = h.probes.children().started;
      const t0 = performance.now();
      const first = await h.service.NodeGetVolumeStats({ volume_id: id, volume_path: fuse.mountPoint });
      const took = performance.now() - t0;
      expect(first.volume_condition.abnormal).toBe(true);
      expect(first.volume_condition.message).toContain(fuse.mountPoint);
      expect(took).toBeLessThan(2_000 + 3_000); // probe deadline 2 s, generous margin
      const started = h.probes.children().started;
      const second = await h.service.NodeGetVolumeStats({ volume_id: id, volume_path: fuse.mountPoint });
      expect(second.volume_condition.abnormal).toBe(true);
      expect(h.probes.children().started).toBe(started);
      expect(started - startedBefore).toBe(1);
      // Identity-level work stays fast while the probe is stuck.
      const t1 = performance.now();
      await h.service.NodeGetCapabilities();
      await h.service.NodeGetInfo();
      expect(performance.now() - t1).toBeLessThan(100);
      await h.deps.records.remove(id);
    } finally {
      await fuse.cleanup();
    }
  }, 30_000);
});

describe("a mount option the kernel refuses", () => {
  test("NodeStageVolume: INVALID_ARGUMENT naming mount_flags, four times in a row, and the volume's breaker stays closed", async () => {
    const id = "pvc-bad-option";
    const file = h.backingFile(64 * 1024 * 1024);
    const { staging } = h.paths(id);
    const req = {
      volume_id: id,
      staging_target_path: staging,
      volume_capability: mountCap("ext4", "SINGLE_NODE_WRITER", ["nosuchoption"]),
      volume_context: { transport: "loop", backingFile: file },
    };
    for (let i = 0; i < 4; i++) {
      const e = await h.service.NodeStageVolume(req).catch((x) => x);
      expect({ i, kind: e.kind, field: e.field }).toEqual({
        i,
        kind: "invalid-argument",
        field: "volume_capability.mount.mount_flags",
      });
    }
    expect(h.deps.breakers.isOpen(`volume:${id}`)).toBe(false);
    expect(mountsAt(staging)).toEqual([]);
    // The same volume with valid options stages: nothing was broken by the refusals.
    expect(await h.service.NodeStageVolume({ ...req, volume_capability: mountCap("ext4") })).toEqual({});
    expect(mountsAt(staging).length).toBe(1);
    await h.service.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  });
});
