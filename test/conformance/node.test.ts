import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  blockCap,
  Code,
  GiB,
  loopsOf,
  mountCap,
  mountsAt,
  outcome,
  startCluster,
  volName,
  type Cluster,
} from "./harness.ts";

setDefaultTimeout(180_000);
let c: Cluster;
beforeAll(async () => {
  c = await startCluster("node");
});
afterAll(async () => {
  await c?.cleanup();
});

/** CreateVolume + ControllerPublish, then the requests the kubelet would send for it. */
async function provision(what: string, cap: any = mountCap(), sizeGiB = 1) {
  const name = volName(what);
  const v = (
    await c.ctl.controller.CreateVolume({
      name,
      capacity_range: { required_bytes: sizeGiB * GiB },
      volume_capabilities: [cap],
    })
  ).volume;
  const pub = await c.ctl.controller.ControllerPublishVolume({
    volume_id: v.volume_id,
    node_id: c.nodeId,
    volume_capability: cap,
    readonly: false,
  });
  const isBlock = "block" in cap;
  const staging = isBlock ? c.blockStaging(name) : c.staging(name);
  const target = isBlock ? c.blockTarget(name) : c.target(name);
  const stageReq = {
    volume_id: v.volume_id,
    staging_target_path: staging,
    volume_capability: cap,
    volume_context: v.volume_context,
    publish_context: pub.publish_context,
  };
  const publishReq = (t = target, readonly = false, capability = cap) => ({
    volume_id: v.volume_id,
    staging_target_path: staging,
    target_path: t,
    volume_capability: capability,
    readonly,
    volume_context: v.volume_context,
    publish_context: pub.publish_context,
  });
  return { name, v, staging, target, stageReq, publishReq, backingFile: v.volume_context.backingFile as string };
}

describe("NodeStageVolume", () => {
  test("×10 identical → OK, one mount at the staging path, one loop device", async () => {
    const p = await provision("stage10");
    for (let i = 0; i < 10; i++) {
      const r = await outcome(c.node.node.NodeStageVolume(p.stageReq));
      expect({ i, code: r.code, details: r.details }).toEqual({ i, code: Code.OK, details: "" });
      expect(mountsAt(p.staging).length).toBe(1);
      expect(loopsOf(p.backingFile).length).toBe(1);
    }
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("staged, then an incompatible capability (block, or xfs) → ALREADY_EXISTS, nothing changed", async () => {
    const p = await provision("stagecap");
    await c.node.node.NodeStageVolume(p.stageReq);
    const a = await outcome(c.node.node.NodeStageVolume({ ...p.stageReq, volume_capability: blockCap() }));
    expect(a.code).toBe(Code.ALREADY_EXISTS);
    const b = await outcome(c.node.node.NodeStageVolume({ ...p.stageReq, volume_capability: mountCap("xfs") }));
    expect(b.code).toBe(Code.ALREADY_EXISTS);
    expect(mountsAt(p.staging).length).toBe(1);
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("backing file / device not found → NOT_FOUND", async () => {
    const staging = c.staging(volName("nodev"));
    const r = await outcome(
      c.node.node.NodeStageVolume({
        volume_id: "pvc-99999999-2222-4333-8444-555555555555",
        staging_target_path: staging,
        volume_capability: mountCap(),
        volume_context: { transport: "loop", backingFile: join(c.dir, "disks", "no-such-disk.img") },
      }),
    );
    expect(r.code).toBe(Code.NOT_FOUND);
    expect(mountsAt(staging).length).toBe(0);
  });

  test("a volume deleted by the controller (its backing file gone) → NOT_FOUND", async () => {
    const name = volName("gone");
    const v = (
      await c.ctl.controller.CreateVolume({
        name,
        capacity_range: { required_bytes: GiB },
        volume_capabilities: [mountCap()],
      })
    ).volume;
    await c.ctl.controller.DeleteVolume({ volume_id: v.volume_id });
    const r = await outcome(
      c.node.node.NodeStageVolume({
        volume_id: v.volume_id,
        staging_target_path: c.staging(name),
        volume_capability: mountCap(),
        volume_context: v.volume_context,
      }),
    );
    expect(r.code).toBe(Code.NOT_FOUND);
  });

  test("missing volume_id / staging_target_path / volume_capability → INVALID_ARGUMENT naming the field", async () => {
    const p = await provision("stageargs");
    for (const field of ["volume_id", "staging_target_path", "volume_capability"]) {
      const req: Record<string, unknown> = { ...p.stageReq };
      delete req[field];
      const r = await outcome(c.node.node.NodeStageVolume(req));
      expect({ field, code: r.code, names: r.details.includes(field) }).toEqual({
        field,
        code: Code.INVALID_ARGUMENT,
        names: true,
      });
    }
    expect(mountsAt(p.staging).length).toBe(0);
  });
});

describe("NodeUnstageVolume", () => {
  test("not staged → OK, nothing mounted at the staging path", async () => {
    const p = await provision("unstaged");
    for (let i = 0; i < 3; i++)
      expect(
        (await outcome(c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging })))
          .code,
      ).toBe(Code.OK);
    expect(mountsAt(p.staging).length).toBe(0);
  });

  test("after a stage: ×10 → OK, nothing mounted at the staging path, loop device detached", async () => {
    const p = await provision("unstage10");
    await c.node.node.NodeStageVolume(p.stageReq);
    for (let i = 0; i < 10; i++) {
      expect(
        (await outcome(c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging })))
          .code,
      ).toBe(Code.OK);
      expect(mountsAt(p.staging).length).toBe(0);
      expect(loopsOf(p.backingFile)).toEqual([]);
    }
  });

  test("missing staging_target_path → INVALID_ARGUMENT naming it", async () => {
    const r = await outcome(c.node.node.NodeUnstageVolume({ volume_id: "pvc-99999999-2222-4333-8444-555555555555" }));
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.details).toContain("staging_target_path");
  });
});

describe("NodePublishVolume / NodeUnpublishVolume (filesystem)", () => {
  test("creates the target directory, ×10 → OK with one bind mount; data written there is on the volume", async () => {
    const p = await provision("pub10");
    await c.node.node.NodeStageVolume(p.stageReq);
    expect(existsSync(p.target)).toBe(false);
    for (let i = 0; i < 10; i++) {
      const r = await outcome(c.node.node.NodePublishVolume(p.publishReq()));
      expect({ i, code: r.code, details: r.details }).toEqual({ i, code: Code.OK, details: "" });
      expect(statSync(p.target).isDirectory()).toBe(true);
      expect(mountsAt(p.target).length).toBe(1);
    }
    writeFileSync(join(p.target, "hello"), "world");
    expect(readFileSync(join(p.staging, "hello"), "utf8")).toBe("world");
    for (let i = 0; i < 10; i++) {
      expect(
        (await outcome(c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target }))).code,
      ).toBe(Code.OK);
      expect(existsSync(p.target)).toBe(false);
    }
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("published, then the same target with readonly flipped → ALREADY_EXISTS", async () => {
    const p = await provision("pubro");
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    const r = await outcome(c.node.node.NodePublishVolume(p.publishReq(p.target, true)));
    expect(r.code).toBe(Code.ALREADY_EXISTS);
    expect(mountsAt(p.target).length).toBe(1);
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("published, then the same target with an incompatible capability (access mode) → ALREADY_EXISTS", async () => {
    const p = await provision("pubmode");
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    const r = await outcome(
      c.node.node.NodePublishVolume(p.publishReq(p.target, false, mountCap("ext4", "SINGLE_NODE_READER_ONLY"))),
    );
    expect(r.code).toBe(Code.ALREADY_EXISTS);
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("not staged (staging path exists but empty) → FAILED_PRECONDITION; staging path missing → FAILED_PRECONDITION", async () => {
    const p = await provision("pubnostage");
    const a = await outcome(c.node.node.NodePublishVolume(p.publishReq()));
    expect(a.code).toBe(Code.FAILED_PRECONDITION);
    rmSync(p.staging, { recursive: true });
    const b = await outcome(c.node.node.NodePublishVolume(p.publishReq()));
    expect(b.code).toBe(Code.FAILED_PRECONDITION);
    expect(existsSync(p.target)).toBe(false);
  });

  test("SINGLE_NODE_WRITER published on one target, requested on another → FAILED_PRECONDITION", async () => {
    const p = await provision("snw");
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    const other = c.target(p.name, "pod-b");
    const r = await outcome(c.node.node.NodePublishVolume(p.publishReq(other)));
    expect(r.code).toBe(Code.FAILED_PRECONDITION);
    expect(mountsAt(other).length).toBe(0);
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("SINGLE_NODE_MULTI_WRITER may be published on two targets of the node", async () => {
    const cap = mountCap("ext4", "SINGLE_NODE_MULTI_WRITER");
    const p = await provision("snmw", cap);
    await c.node.node.NodeStageVolume(p.stageReq);
    const other = c.target(p.name, "pod-b");
    await c.node.node.NodePublishVolume(p.publishReq());
    await c.node.node.NodePublishVolume(p.publishReq(other));
    expect(mountsAt(other).length).toBe(1);
    for (const t of [p.target, other])
      await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: t });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("NodeUnpublish not published → OK; missing target_path → INVALID_ARGUMENT naming it", async () => {
    const p = await provision("unpub");
    for (let i = 0; i < 3; i++)
      expect(
        (await outcome(c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target }))).code,
      ).toBe(Code.OK);
    const r = await outcome(c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id }));
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.details).toContain("target_path");
  });

  test("NodePublish missing target_path → INVALID_ARGUMENT naming it", async () => {
    const p = await provision("pubargs");
    const req: Record<string, unknown> = p.publishReq();
    delete req.target_path;
    const r = await outcome(c.node.node.NodePublishVolume(req));
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.details).toContain("target_path");
  });
});

describe("NodeGetVolumeStats / NodeExpandVolume", () => {
  test("stats on a published volume: bytes and inodes with available, total, used; ×10", async () => {
    const p = await provision("stats");
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    for (let i = 0; i < 10; i++) {
      const s = await c.node.node.NodeGetVolumeStats({ volume_id: p.v.volume_id, volume_path: p.target });
      for (const unit of ["BYTES", "INODES"]) {
        const u = s.usage.find((x: any) => x.unit === unit);
        expect(u).toBeDefined();
        expect(u.total).toBeGreaterThan(0);
        expect(u.available).toBeGreaterThan(0);
        expect(u.used).toBeGreaterThan(0);
        expect(u.used + u.available).toBeLessThanOrEqual(u.total);
      }
      expect(s.volume_condition.abnormal).toBe(false);
    }
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("stats on a wrong path → NOT_FOUND; unknown volume → NOT_FOUND; missing volume_path → INVALID_ARGUMENT", async () => {
    const p = await provision("statsbad");
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    const a = await outcome(
      c.node.node.NodeGetVolumeStats({ volume_id: p.v.volume_id, volume_path: join(c.dir, "kubelet", "elsewhere") }),
    );
    expect(a.code).toBe(Code.NOT_FOUND);
    const b = await outcome(
      c.node.node.NodeGetVolumeStats({ volume_id: "pvc-99999999-2222-4333-8444-555555555555", volume_path: p.target }),
    );
    expect(b.code).toBe(Code.NOT_FOUND);
    const d = await outcome(c.node.node.NodeGetVolumeStats({ volume_id: p.v.volume_id }));
    expect(d.code).toBe(Code.INVALID_ARGUMENT);
    expect(d.details).toContain("volume_path");
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("NodeExpandVolume unknown volume → NOT_FOUND", async () => {
    const r = await outcome(
      c.node.node.NodeExpandVolume({
        volume_id: "pvc-99999999-2222-4333-8444-555555555555",
        volume_path: c.target("nope"),
        capacity_range: { required_bytes: 2 * GiB },
      }),
    );
    expect(r.code).toBe(Code.NOT_FOUND);
  });

  test("ControllerExpand then NodeExpand (online, ext4): grows where the kernel allows it, else a clear FAILED_PRECONDITION and the grow happens at the next stage; beyond the device → OUT_OF_RANGE", async () => {
    // Growing a mounted ext4 needs CAP_SYS_RESOURCE. Both outcomes are the driver's documented behaviour;
    // which one this machine shows depends on the capability set the node process runs with.
    const capEff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(readFileSync("/proc/self/status", "utf8"))![1]}`);
    const canGrowOnline = ((capEff >> 24n) & 1n) === 1n;
    const p = await provision("expand");
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    const total = async () =>
      (await c.node.node.NodeGetVolumeStats({ volume_id: p.v.volume_id, volume_path: p.target })).usage.find(
        (u: any) => u.unit === "BYTES",
      ).total;
    const before = await total();
    const g = await c.ctl.controller.ControllerExpandVolume({
      volume_id: p.v.volume_id,
      capacity_range: { required_bytes: 2 * GiB },
      volume_capability: mountCap(),
    });
    expect(g.capacity_bytes).toBe(2 * GiB);
    expect(g.node_expansion_required).toBe(true);
    for (let i = 0; i < 10; i++) {
      const r = await outcome(
        c.node.node.NodeExpandVolume({
          volume_id: p.v.volume_id,
          volume_path: p.target,
          capacity_range: { required_bytes: 2 * GiB },
          volume_capability: mountCap(),
        }),
      );
      if (canGrowOnline) {
        expect({ i, code: r.code, details: r.details }).toEqual({ i, code: Code.OK, details: "" });
        expect(r.value.capacity_bytes).toBe(2 * GiB);
      } else {
        expect({ i, code: r.code }).toEqual({ i, code: Code.FAILED_PRECONDITION });
        expect(r.details).toContain("CAP_SYS_RESOURCE");
      }
    }
    const big = await outcome(
      c.node.node.NodeExpandVolume({
        volume_id: p.v.volume_id,
        volume_path: p.target,
        capacity_range: { required_bytes: 5 * GiB },
      }),
    );
    expect(big.code).toBe(Code.OUT_OF_RANGE);
    if (!canGrowOnline) {
      // The promised fallback: unmounted, the next stage grows it offline.
      await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
      await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
      await c.node.node.NodeStageVolume(p.stageReq);
      await c.node.node.NodePublishVolume(p.publishReq());
    }
    expect(await total()).toBeGreaterThan(before * 1.8);
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });
});

describe("expansion paths the kernel allows without CAP_SYS_RESOURCE", () => {
  test("xfs online: ControllerExpand then NodeExpand on the published path grows the filesystem; ×10 OK", async () => {
    const cap = mountCap("xfs");
    const p = await provision("expandxfs", cap);
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    const total = async () =>
      (await c.node.node.NodeGetVolumeStats({ volume_id: p.v.volume_id, volume_path: p.target })).usage.find(
        (u: any) => u.unit === "BYTES",
      ).total;
    const before = await total();
    await c.ctl.controller.ControllerExpandVolume({
      volume_id: p.v.volume_id,
      capacity_range: { required_bytes: 2 * GiB },
      volume_capability: cap,
    });
    for (let i = 0; i < 10; i++) {
      const r = await outcome(
        c.node.node.NodeExpandVolume({
          volume_id: p.v.volume_id,
          volume_path: p.target,
          capacity_range: { required_bytes: 2 * GiB },
          volume_capability: cap,
        }),
      );
      expect({ i, code: r.code, details: r.details }).toEqual({ i, code: Code.OK, details: "" });
      expect(r.value.capacity_bytes).toBe(2 * GiB);
    }
    expect(await total()).toBeGreaterThan(before * 1.8);
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });

  test("ext4 offline: ControllerExpand while unstaged, the next NodeStage grows the filesystem", async () => {
    const p = await provision("expandoff");
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    const total = async () =>
      (await c.node.node.NodeGetVolumeStats({ volume_id: p.v.volume_id, volume_path: p.target })).usage.find(
        (u: any) => u.unit === "BYTES",
      ).total;
    const before = await total();
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
    await c.ctl.controller.ControllerExpandVolume({
      volume_id: p.v.volume_id,
      capacity_range: { required_bytes: 2 * GiB },
      volume_capability: mountCap(),
    });
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    expect(await total()).toBeGreaterThan(before * 1.8);
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });
});

describe("re-staging an ext4 volume that has been used", () => {
  test("a pod moves twice: stage/unstage three times, with the second mount in a later second than mkfs → every NodeStage OK, data kept", async () => {
    const p = await provision("restage");
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    writeFileSync(join(p.target, "keep"), "ext4-data");
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
    // ext4 keeps mount and check times in whole seconds: this makes the next mount later than mkfs (as any real volume's is).
    await Bun.sleep(1_100);
    for (let round = 2; round <= 3; round++) {
      const r = await outcome(c.node.node.NodeStageVolume(p.stageReq));
      expect({ round, code: r.code, details: r.details }).toEqual({ round, code: Code.OK, details: "" });
      await c.node.node.NodePublishVolume(p.publishReq());
      expect(readFileSync(join(p.target, "keep"), "utf8")).toBe("ext4-data");
      await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
      await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
    }
  });
});

describe("raw block volume lifecycle", () => {
  test("stage (no mount), publish creates a block device node (not a bind mount of /dev), ×10, data round-trips, unpublish removes it, unstage detaches", async () => {
    const cap = blockCap();
    const p = await provision("block", cap);
    for (let i = 0; i < 10; i++) expect((await outcome(c.node.node.NodeStageVolume(p.stageReq))).code).toBe(Code.OK);
    expect(mountsAt(p.staging).length).toBe(0);
    expect(loopsOf(p.backingFile).length).toBe(1);
    expect(existsSync(p.target)).toBe(false);
    for (let i = 0; i < 10; i++) {
      const r = await outcome(c.node.node.NodePublishVolume(p.publishReq()));
      expect({ i, code: r.code, details: r.details }).toEqual({ i, code: Code.OK, details: "" });
      expect(statSync(p.target).isBlockDevice()).toBe(true);
      expect(mountsAt(p.target)).toEqual([]);
    }
    const loopDev = statSync(loopsOf(p.backingFile)[0]!).rdev;
    expect(statSync(p.target).rdev).toBe(loopDev);
    const payload = Buffer.alloc(4096, 0x5a);
    writeFileSync(p.target, payload);
    const back = Bun.spawnSync(["dd", `if=${p.target}`, "bs=4096", "count=1", "status=none"]).stdout;
    expect(Buffer.compare(Buffer.from(back), payload)).toBe(0);
    const stats = await c.node.node.NodeGetVolumeStats({ volume_id: p.v.volume_id, volume_path: p.target });
    expect(stats.usage.find((u: any) => u.unit === "BYTES").total).toBe(GiB);
    for (let i = 0; i < 10; i++) {
      expect(
        (await outcome(c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target }))).code,
      ).toBe(Code.OK);
      expect(existsSync(p.target)).toBe(false);
    }
    for (let i = 0; i < 10; i++)
      expect(
        (await outcome(c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging })))
          .code,
      ).toBe(Code.OK);
    expect(loopsOf(p.backingFile)).toEqual([]);
  });

  test("block staged, then published as a filesystem → an error (never a mount), block target untouched", async () => {
    const p = await provision("blockmix", blockCap());
    await c.node.node.NodeStageVolume(p.stageReq);
    const fsTarget = c.target(p.name);
    const r = await outcome(c.node.node.NodePublishVolume(p.publishReq(fsTarget, false, mountCap())));
    expect([Code.INVALID_ARGUMENT, Code.ALREADY_EXISTS, Code.FAILED_PRECONDITION] as number[]).toContain(r.code);
    expect(mountsAt(fsTarget).length).toBe(0);
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
  });
});

describe("xfs lifecycle", () => {
  test("create with fs_type xfs, stage ×10, publish ×10, write, unstage, restage keeps the data, clean teardown", async () => {
    const cap = mountCap("xfs");
    const p = await provision("xfs", cap);
    for (let i = 0; i < 10; i++) expect((await outcome(c.node.node.NodeStageVolume(p.stageReq))).code).toBe(Code.OK);
    const fstype = mountsAt(p.staging)[0]!.split(" - ")[1]!.split(" ")[0];
    expect(fstype).toBe("xfs");
    for (let i = 0; i < 10; i++)
      expect((await outcome(c.node.node.NodePublishVolume(p.publishReq()))).code).toBe(Code.OK);
    writeFileSync(join(p.target, "keep"), "xfs-data");
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
    expect(mountsAt(p.staging).length).toBe(0);
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    expect(readFileSync(join(p.target, "keep"), "utf8")).toBe("xfs-data");
    const s = await c.node.node.NodeGetVolumeStats({ volume_id: p.v.volume_id, volume_path: p.target });
    expect(s.usage.length).toBe(2);
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
    expect(existsSync(p.target)).toBe(false);
    expect(loopsOf(p.backingFile)).toEqual([]);
    await c.ctl.controller.ControllerUnpublishVolume({ volume_id: p.v.volume_id, node_id: c.nodeId });
    expect((await outcome(c.ctl.controller.DeleteVolume({ volume_id: p.v.volume_id }))).code).toBe(Code.OK);
  });

  test("restore from a snapshot of a filesystem volume: the data is in the restored volume", async () => {
    const p = await provision("snapdata");
    await c.node.node.NodeStageVolume(p.stageReq);
    await c.node.node.NodePublishVolume(p.publishReq());
    writeFileSync(join(p.target, "marker"), "from-the-snapshot");
    await c.node.node.NodeUnpublishVolume({ volume_id: p.v.volume_id, target_path: p.target });
    await c.node.node.NodeUnstageVolume({ volume_id: p.v.volume_id, staging_target_path: p.staging });
    const snap = (await c.ctl.controller.CreateSnapshot({ name: volName("datasnap"), source_volume_id: p.v.volume_id }))
      .snapshot;
    const name = volName("restoredata");
    const r = (
      await c.ctl.controller.CreateVolume({
        name,
        capacity_range: { required_bytes: GiB },
        volume_capabilities: [mountCap()],
        volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } },
      })
    ).volume;
    const staging = c.staging(name);
    const target = c.target(name);
    await c.node.node.NodeStageVolume({
      volume_id: r.volume_id,
      staging_target_path: staging,
      volume_capability: mountCap(),
      volume_context: r.volume_context,
    });
    await c.node.node.NodePublishVolume({
      volume_id: r.volume_id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: mountCap(),
      readonly: true,
      volume_context: r.volume_context,
    });
    expect(readFileSync(join(target, "marker"), "utf8")).toBe("from-the-snapshot");
    expect(mountsAt(target)[0]!.split(" ")[5]!.split(",")).toContain("ro");
    await c.node.node.NodeUnpublishVolume({ volume_id: r.volume_id, target_path: target });
    await c.node.node.NodeUnstageVolume({ volume_id: r.volume_id, staging_target_path: staging });
  });
});
