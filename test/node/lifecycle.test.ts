import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { blockCap, mountCap, mountsAt, nodeHarness } from "./harness.ts";

const h = nodeHarness();
afterAll(() => h.cleanup());

const MiB = 1024 * 1024;
const times = async (n: number, fn: () => Promise<unknown>) => {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await fn());
  return out;
};
const loopsOf = (file: string) =>
  execFileSync("losetup", ["-j", file], { encoding: "utf8" }).trim().split("\n").filter(Boolean);

for (const fsType of ["ext4", "xfs"]) {
  describe(`loop-backed ${fsType} lifecycle`, () => {
    test("stage → publish → stats → expand → unpublish → unstage, each ×10", async () => {
      const id = `pvc-${fsType}-life`;
      const file = h.backingFile(fsType === "xfs" ? 320 * MiB : 64 * MiB);
      const { staging, target } = h.paths(id);
      const ctx = { transport: "loop", backingFile: file };
      const stage = {
        volume_id: id,
        staging_target_path: staging,
        volume_capability: mountCap(fsType),
        volume_context: ctx,
      };

      expect(await times(10, () => h.service.NodeStageVolume(stage))).toEqual(Array(10).fill({}));
      expect(mountsAt(staging).length).toBe(1);
      expect(mountsAt(staging)[0]).toContain(` - ${fsType} `);
      expect(loopsOf(file).length).toBe(1);
      const record = JSON.parse(readFileSync(join(h.base, "state", "volumes", `${id}.json`), "utf8"));
      expect(record).toMatchObject({
        volume_id: id,
        transport: "loop",
        backing_file: file,
        staging_path: staging,
        fs_type: fsType,
        access_type: "mount",
        state: "staged",
      });

      const publish = {
        volume_id: id,
        staging_target_path: staging,
        target_path: target,
        volume_capability: mountCap(fsType),
        readonly: false,
      };
      expect(await times(10, () => h.service.NodePublishVolume(publish))).toEqual(Array(10).fill({}));
      expect(mountsAt(target).length).toBe(1);
      writeFileSync(join(target, "hello.txt"), "data survives");
      expect(readFileSync(join(staging, "hello.txt"), "utf8")).toBe("data survives");

      const stats = await h.service.NodeGetVolumeStats({ volume_id: id, volume_path: target });
      expect(stats.volume_condition).toEqual({ abnormal: false, message: "healthy" });
      const bytes = stats.usage.find((u) => u.unit === "BYTES")!;
      const inodes = stats.usage.find((u) => u.unit === "INODES")!;
      expect(bytes.total).toBeGreaterThan(30 * MiB);
      expect(bytes.used + bytes.available).toBeLessThanOrEqual(bytes.total);
      expect(inodes.total).toBeGreaterThan(0);
      expect(inodes.used).toBeGreaterThan(0);

      // Grow the backing file as the controller's file backend would.
      const grown = (fsType === "xfs" ? 400 : 96) * MiB;
      execFileSync("truncate", ["-s", String(grown), file]);
      if (fsType === "xfs") {
        const expanded = await times(10, () =>
          h.service.NodeExpandVolume({ volume_id: id, volume_path: target, capacity_range: { required_bytes: grown } }),
        );
        expect(expanded.every((r: any) => r.capacity_bytes === grown)).toBe(true);
        const after = await h.service.NodeGetVolumeStats({ volume_id: id, volume_path: target });
        expect(after.usage.find((u) => u.unit === "BYTES")!.total).toBeGreaterThan(bytes.total);
      }
      // Asking for more than the device has is OUT_OF_RANGE.
      const tooBig = await h.service
        .NodeExpandVolume({ volume_id: id, volume_path: target, capacity_range: { required_bytes: grown * 4 } })
        .catch((e) => e);
      expect(tooBig.kind).toBe("out-of-range");

      const unpublish = { volume_id: id, target_path: target };
      expect(await times(10, () => h.service.NodeUnpublishVolume(unpublish))).toEqual(Array(10).fill({}));
      expect(mountsAt(target).length).toBe(0);
      expect(existsSync(target)).toBe(false);

      const unstage = { volume_id: id, staging_target_path: staging };
      expect(await times(10, () => h.service.NodeUnstageVolume(unstage))).toEqual(Array(10).fill({}));
      expect(mountsAt(staging).length).toBe(0);
      expect(existsSync(staging)).toBe(false);
      expect(loopsOf(file)).toEqual([]);
      expect(existsSync(join(h.base, "state", "volumes", `${id}.json`))).toBe(false);

      // Stage again: the data is still there (existing filesystem checked, not reformatted), and a
      // device grown while unstaged is grown at stage (ext4 offline before the mount).
      await h.service.NodeStageVolume(stage);
      expect(readFileSync(join(staging, "hello.txt"), "utf8")).toBe("data survives");
      const restaged = await h.service.NodeGetVolumeStats({ volume_id: id, volume_path: staging });
      expect(restaged.usage.find((u) => u.unit === "BYTES")!.total).toBeGreaterThan(bytes.total);
      await h.service.NodeUnstageVolume(unstage);
    }, 120_000);
  });
}

describe("raw block lifecycle", () => {
  test("published as a device node (mknod), never a bind mount of /dev; each RPC ×10", async () => {
    const id = "pvc-block-life";
    const file = h.backingFile(32 * MiB);
    const { staging, target } = h.paths(id);
    const stage = {
      volume_id: id,
      staging_target_path: staging,
      volume_capability: blockCap(),
      volume_context: { transport: "loop", backingFile: file },
    };
    await times(10, () => h.service.NodeStageVolume(stage));
    const [loopDev] = loopsOf(file)[0]!.split(":");
    const publish = {
      volume_id: id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: blockCap(),
      readonly: false,
    };
    await times(10, () => h.service.NodePublishVolume(publish));
    const st = statSync(target);
    expect(st.isBlockDevice()).toBe(true);
    expect(st.rdev).toBe(statSync(loopDev!).rdev);
    expect(mountsAt(target)).toEqual([]);
    expect(
      readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .filter((l) => l.includes(target)),
    ).toEqual([]);
    // Writes through the node reach the backing file.
    execFileSync("dd", ["if=/dev/urandom", `of=${target}`, "bs=4096", "count=1", "conv=fsync", "status=none"]);
    const stats = await h.service.NodeGetVolumeStats({ volume_id: id, volume_path: target });
    expect(stats.usage[0]).toMatchObject({ unit: "BYTES", total: 32 * MiB });
    execFileSync("truncate", ["-s", String(48 * MiB), file]);
    expect(await h.service.NodeExpandVolume({ volume_id: id, volume_path: target })).toEqual({
      capacity_bytes: 48 * MiB,
    });
    await times(10, () => h.service.NodeUnpublishVolume({ volume_id: id, target_path: target }));
    expect(existsSync(target)).toBe(false);
    await times(10, () => h.service.NodeUnstageVolume({ volume_id: id, staging_target_path: staging }));
    expect(loopsOf(file)).toEqual([]);
  }, 60_000);
});

describe("codes", () => {
  test("bad input names the field and changes nothing", async () => {
    const { staging } = h.paths("pvc-bad");
    const cases: [any, string][] = [
      [{ staging_target_path: staging, volume_capability: mountCap(), volume_context: {} }, "volume_id"],
      [{ volume_id: "pvc-bad", volume_capability: mountCap(), volume_context: {} }, "staging_target_path"],
      [{ volume_id: "pvc-bad", staging_target_path: staging, volume_context: {} }, "volume_capability"],
      [
        {
          volume_id: "pvc-bad",
          staging_target_path: staging,
          volume_capability: mountCap("btrfs"),
          volume_context: {},
        },
        "volume_capability.mount.fs_type",
      ],
      [
        {
          volume_id: "pvc-bad",
          staging_target_path: staging,
          volume_capability: mountCap(),
          volume_context: { transport: "loop" },
        },
        "volume_context.backingFile",
      ],
      [
        {
          volume_id: "pvc-bad",
          staging_target_path: staging,
          volume_capability: mountCap(),
          volume_context: { nqn: "bogus", nvmeAddress: "10.0.0.1" },
        },
        "volume_context.nqn",
      ],
      [
        {
          volume_id: "pvc-bad",
          staging_target_path: staging,
          volume_capability: mountCap(),
          volume_context: { nqn: "nqn.2000-02.com.mikrotik:pvc-1", nvmeAddress: "10.0.0.1", nvmePort: "99999" },
        },
        "volume_context.nvmePort",
      ],
    ];
    for (const [req, field] of cases) {
      const e = await h.service.NodeStageVolume(req).catch((x) => x);
      expect({ kind: e.kind, field: e.field }).toEqual({ kind: "invalid-argument", field });
    }
    expect(existsSync(join(h.base, "state", "volumes", "pvc-bad.json"))).toBe(false);
  });

  test("publish of an unstaged volume is FAILED_PRECONDITION; unpublish/unstage of unknown is OK; stats of unknown is NOT_FOUND", async () => {
    const { staging, target } = h.paths("pvc-none");
    const e = await h.service
      .NodePublishVolume({
        volume_id: "pvc-none",
        staging_target_path: staging,
        target_path: target,
        volume_capability: mountCap(),
      })
      .catch((x) => x);
    expect(e.kind).toBe("failed-precondition");
    expect(await h.service.NodeUnpublishVolume({ volume_id: "pvc-none", target_path: target })).toEqual({});
    expect(await h.service.NodeUnstageVolume({ volume_id: "pvc-none", staging_target_path: staging })).toEqual({});
    expect(
      (await h.service.NodeGetVolumeStats({ volume_id: "pvc-none", volume_path: target }).catch((x) => x)).kind,
    ).toBe("not-found");
    expect(
      (await h.service.NodeExpandVolume({ volume_id: "pvc-none", volume_path: target }).catch((x) => x)).kind,
    ).toBe("not-found");
  });

  test("incompatible restage is ALREADY_EXISTS; incompatible republish is ALREADY_EXISTS; second writer target is FAILED_PRECONDITION", async () => {
    const id = "pvc-compat";
    const file = h.backingFile(32 * MiB);
    const { staging, target } = h.paths(id);
    const ctx = { transport: "loop", backingFile: file };
    await h.service.NodeStageVolume({
      volume_id: id,
      staging_target_path: staging,
      volume_capability: mountCap(),
      volume_context: ctx,
    });
    const e1 = await h.service
      .NodeStageVolume({
        volume_id: id,
        staging_target_path: staging,
        volume_capability: blockCap(),
        volume_context: ctx,
      })
      .catch((x) => x);
    expect(e1.kind).toBe("already-exists");
    await h.service.NodePublishVolume({
      volume_id: id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: mountCap(),
      readonly: true,
    });
    expect(mountsAt(target)[0]!.split(" ")[5]!.split(",")).toContain("ro");
    expect(() => writeFileSync(join(target, "x"), "x")).toThrow();
    const e2 = await h.service
      .NodePublishVolume({
        volume_id: id,
        staging_target_path: staging,
        target_path: target,
        volume_capability: mountCap(),
        readonly: false,
      })
      .catch((x) => x);
    expect(e2.kind).toBe("already-exists");
    const e3 = await h.service
      .NodePublishVolume({
        volume_id: id,
        staging_target_path: staging,
        target_path: target + "2",
        volume_capability: mountCap(),
        readonly: false,
      })
      .catch((x) => x);
    expect(e3.kind).toBe("failed-precondition");
    // Unstage while still published is refused and changes nothing.
    const e4 = await h.service.NodeUnstageVolume({ volume_id: id, staging_target_path: staging }).catch((x) => x);
    expect(e4.kind).toBe("failed-precondition");
    expect(loopsOf(file).length).toBe(1);
    await h.service.NodeUnpublishVolume({ volume_id: id, target_path: target });
    await h.service.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  }, 60_000);

  test("a second operation on the same volume while one runs is ABORTED; other volumes proceed", async () => {
    const a = h.backingFile(32 * MiB),
      b = h.backingFile(32 * MiB);
    const pa = h.paths("pvc-lock-a"),
      pb = h.paths("pvc-lock-b");
    const first = h.service.NodeStageVolume({
      volume_id: "pvc-lock-a",
      staging_target_path: pa.staging,
      volume_capability: mountCap(),
      volume_context: { transport: "loop", backingFile: a },
    });
    const second = h.service
      .NodeStageVolume({
        volume_id: "pvc-lock-a",
        staging_target_path: pa.staging,
        volume_capability: mountCap(),
        volume_context: { transport: "loop", backingFile: a },
      })
      .catch((x) => x);
    const other = h.service.NodeStageVolume({
      volume_id: "pvc-lock-b",
      staging_target_path: pb.staging,
      volume_capability: mountCap(),
      volume_context: { transport: "loop", backingFile: b },
    });
    expect(await first).toEqual({});
    expect((await second).kind).toBe("aborted");
    expect(await other).toEqual({});
    await h.service.NodeUnstageVolume({ volume_id: "pvc-lock-a", staging_target_path: pa.staging });
    await h.service.NodeUnstageVolume({ volume_id: "pvc-lock-b", staging_target_path: pb.staging });
  }, 60_000);

  test("capabilities and info", async () => {
    const caps = (await h.service.NodeGetCapabilities()).capabilities.map((c) => c.rpc.type);
    expect(caps.sort()).toEqual([
      "EXPAND_VOLUME",
      "GET_VOLUME_STATS",
      "SINGLE_NODE_MULTI_WRITER",
      "STAGE_UNSTAGE_VOLUME",
      "VOLUME_CONDITION",
    ]);
    expect(await h.service.NodeGetInfo()).toEqual({
      node_id: "node-a/nqn.2014-08.org.nvmexpress:uuid:node-a",
      max_volumes_per_node: 0,
      accessible_topology: { segments: { "topology.rds.csi.srvlab.io/node": "node-a" } },
    });
  });
});

describe("staging directory ownership", () => {
  test("a staging dir that existed before stays after unstage; a file at staging_target_path → FAILED_PRECONDITION naming the field", async () => {
    const kept = h.paths("pvc-dir-kept");
    mkdirSync(kept.staging, { recursive: true });
    await h.service.NodeStageVolume({
      volume_id: "pvc-dir-kept",
      staging_target_path: kept.staging,
      volume_capability: mountCap(),
      volume_context: { transport: "loop", backingFile: h.backingFile(64 * MiB) },
    });
    expect(mountsAt(kept.staging).length).toBe(1);
    await h.service.NodeUnstageVolume({ volume_id: "pvc-dir-kept", staging_target_path: kept.staging });
    expect(mountsAt(kept.staging).length).toBe(0);
    expect(statSync(kept.staging).isDirectory()).toBe(true);

    const blocked = h.paths("pvc-dir-file");
    mkdirSync(dirname(blocked.staging), { recursive: true });
    writeFileSync(blocked.staging, "");
    const e = await h.service
      .NodeStageVolume({
        volume_id: "pvc-dir-file",
        staging_target_path: blocked.staging,
        volume_capability: mountCap(),
        volume_context: { transport: "loop", backingFile: h.backingFile(64 * MiB) },
      })
      .catch((x) => x);
    expect(e.kind).toBe("failed-precondition");
    expect(e.message).toContain(`staging_target_path ${blocked.staging} exists and is not a directory`);
    expect(readFileSync(blocked.staging, "utf8")).toBe("");
    await h.service.NodeUnstageVolume({ volume_id: "pvc-dir-file", staging_target_path: blocked.staging });
  });
});
