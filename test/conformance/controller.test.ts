import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { blockCap, Code, GiB, mountCap, outcome, startCluster, volName, type Cluster } from "./harness.ts";

setDefaultTimeout(120_000);
let c: Cluster;
beforeAll(async () => {
  c = await startCluster("ctl");
});
afterAll(async () => {
  await c?.cleanup();
});

const create = (name: string, extra: Record<string, unknown> = {}) =>
  c.ctl.controller.CreateVolume({
    name,
    capacity_range: { required_bytes: GiB },
    volume_capabilities: [mountCap()],
    parameters: {},
    ...extra,
  });
/** Plausible ids nothing was ever created under (the Go driver's slot shape). */
const UNKNOWN_VOLUME = "pvc-11111111-2222-4333-8444-555555555555";
const UNKNOWN_SNAPSHOT = "snap-11111111-2222-4333-8444-555555555555";

describe("CreateVolume", () => {
  test("×10 with the same request: OK each time, same volume id, capacity and context", async () => {
    const name = volName("idem");
    const first = (await create(name)).volume;
    expect(first.volume_id).toMatch(/^pvc-[0-9a-f-]{36}$/);
    expect(first.capacity_bytes).toBe(GiB);
    expect(first.volume_context.transport).toBe("loop");
    expect(existsSync(first.volume_context.backingFile)).toBe(true);
    for (let i = 0; i < 10; i++) {
      const again = (await create(name)).volume;
      expect(again.volume_id).toBe(first.volume_id);
      expect(again.capacity_bytes).toBe(first.capacity_bytes);
      expect(again.volume_context).toEqual(first.volume_context);
    }
    const listed = (await c.ctl.controller.ListVolumes({})).entries.filter(
      (e: any) => e.volume.volume_id === first.volume_id,
    );
    expect(listed.length).toBe(1);
  });

  test("same name, incompatible size → ALREADY_EXISTS", async () => {
    const name = volName("size");
    await create(name);
    const r = await outcome(create(name, { capacity_range: { required_bytes: 3 * GiB } }));
    expect(r.code).toBe(Code.ALREADY_EXISTS);
  });

  test("same name, incompatible capability (ext4 then xfs) → ALREADY_EXISTS", async () => {
    const name = volName("cap");
    await create(name, { volume_capabilities: [mountCap("ext4")] });
    const r = await outcome(create(name, { volume_capabilities: [mountCap("xfs")] }));
    expect(r.code).toBe(Code.ALREADY_EXISTS);
  });

  test("same name, incompatible parameters → ALREADY_EXISTS", async () => {
    const name = volName("params");
    await create(name, { parameters: { nvmePort: "4420" } });
    const r = await outcome(create(name, { parameters: { nvmePort: "4421" } }));
    expect(r.code).toBe(Code.ALREADY_EXISTS);
  });

  test("same name, incompatible content source (none, then a snapshot) → ALREADY_EXISTS", async () => {
    const src = (await create(volName("srcvol"))).volume;
    const snap = (await c.ctl.controller.CreateSnapshot({ name: volName("srcsnap"), source_volume_id: src.volume_id }))
      .snapshot;
    const name = volName("source");
    await create(name);
    const r = await outcome(create(name, { volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } } }));
    expect(r.code).toBe(Code.ALREADY_EXISTS);
    // and the other way round: restored from a snapshot, then asked as a blank volume
    const name2 = volName("source2");
    await create(name2, { volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } } });
    expect((await outcome(create(name2))).code).toBe(Code.ALREADY_EXISTS);
  });

  test("content source snapshot not found → NOT_FOUND; volume not found → NOT_FOUND", async () => {
    const a = await outcome(
      create(volName("nosnap"), { volume_content_source: { snapshot: { snapshot_id: UNKNOWN_SNAPSHOT } } }),
    );
    expect(a.code).toBe(Code.NOT_FOUND);
    const b = await outcome(
      create(volName("novol"), { volume_content_source: { volume: { volume_id: UNKNOWN_VOLUME } } }),
    );
    expect(b.code).toBe(Code.NOT_FOUND);
  });

  test("capacity impossible → OUT_OF_RANGE: required > limit, above the 16 TiB maximum, no GiB multiple inside the range", async () => {
    const cases = [
      { required_bytes: 2 * GiB, limit_bytes: GiB },
      { required_bytes: 17 * 1024 * GiB },
      { required_bytes: GiB + 1, limit_bytes: GiB + 100 },
    ];
    for (const capacity_range of cases) {
      const r = await outcome(create(volName("range"), { capacity_range }));
      expect({ range: capacity_range, code: r.code }).toEqual({ range: capacity_range, code: Code.OUT_OF_RANGE });
    }
  });

  test("out of space → RESOURCE_EXHAUSTED", async () => {
    const cap = await c.ctl.controller.GetCapacity({});
    const want = Math.ceil((cap.available_capacity + 10 * GiB) / GiB) * GiB;
    expect(want).toBeLessThan(16 * 1024 * GiB); // otherwise this machine cannot show the row
    const r = await outcome(create(volName("full"), { capacity_range: { required_bytes: want } }));
    expect(r.code).toBe(Code.RESOURCE_EXHAUSTED);
  });

  test("required == limit returns exactly that capacity; a rounded size stays inside the range", async () => {
    const exact = (
      await create(volName("exact"), { capacity_range: { required_bytes: 2 * GiB, limit_bytes: 2 * GiB } })
    ).volume;
    expect(exact.capacity_bytes).toBe(2 * GiB);
    const rounded = (
      await create(volName("round"), { capacity_range: { required_bytes: GiB + 1, limit_bytes: 3 * GiB } })
    ).volume;
    expect(rounded.capacity_bytes).toBeGreaterThanOrEqual(GiB + 1);
    expect(rounded.capacity_bytes).toBeLessThanOrEqual(3 * GiB);
  });

  test("a 128-character name works (and repeats idempotently)", async () => {
    const name = `pvc-${"a".repeat(124)}`;
    expect(name.length).toBe(128);
    const a = (await create(name)).volume;
    const b = (await create(name)).volume;
    expect(b.volume_id).toBe(a.volume_id);
  });

  test("missing name / capabilities → INVALID_ARGUMENT naming the field", async () => {
    const a = await outcome(c.ctl.controller.CreateVolume({ volume_capabilities: [mountCap()] }));
    expect(a.code).toBe(Code.INVALID_ARGUMENT);
    expect(a.details).toContain("name");
    const b = await outcome(c.ctl.controller.CreateVolume({ name: volName("nocaps") }));
    expect(b.code).toBe(Code.INVALID_ARGUMENT);
    expect(b.details).toContain("volume_capabilities");
  });
});

describe("DeleteVolume", () => {
  test("unknown id and malformed-but-plausible ids → OK", async () => {
    for (const id of [UNKNOWN_VOLUME, "pvc-not-a-uuid", "some-volume-id"]) {
      const r = await outcome(c.ctl.controller.DeleteVolume({ volume_id: id }));
      expect({ id, code: r.code }).toEqual({ id, code: Code.OK });
    }
  });

  test("missing volume_id → INVALID_ARGUMENT naming the field", async () => {
    const r = await outcome(c.ctl.controller.DeleteVolume({}));
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.details).toContain("volume_id");
  });

  test("removes the backing file; ×10 after that is OK", async () => {
    const v = (await create(volName("del"))).volume;
    for (let i = 0; i < 10; i++)
      expect((await outcome(c.ctl.controller.DeleteVolume({ volume_id: v.volume_id }))).code).toBe(Code.OK);
    expect(existsSync(v.volume_context.backingFile)).toBe(false);
  });

  test("volume in use (published to a node) → FAILED_PRECONDITION, and the volume is kept", async () => {
    const v = (await create(volName("inuse"))).volume;
    await c.ctl.controller.ControllerPublishVolume({
      volume_id: v.volume_id,
      node_id: c.nodeId,
      volume_capability: mountCap(),
      readonly: false,
    });
    const r = await outcome(c.ctl.controller.DeleteVolume({ volume_id: v.volume_id }));
    expect(r.code).toBe(Code.FAILED_PRECONDITION);
    expect(existsSync(v.volume_context.backingFile)).toBe(true);
    await c.ctl.controller.ControllerUnpublishVolume({ volume_id: v.volume_id, node_id: c.nodeId });
    expect((await outcome(c.ctl.controller.DeleteVolume({ volume_id: v.volume_id }))).code).toBe(Code.OK);
  });

  test("with a dependent snapshot: either FAILED_PRECONDITION, or (independent copies) OK and the snapshot still restores", async () => {
    const v = (await create(volName("hassnap"))).volume;
    const snap = (await c.ctl.controller.CreateSnapshot({ name: volName("dep"), source_volume_id: v.volume_id }))
      .snapshot;
    const r = await outcome(c.ctl.controller.DeleteVolume({ volume_id: v.volume_id }));
    if (r.code === Code.OK) {
      const restored = await outcome(
        create(volName("restore-after-delete"), {
          volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } },
        }),
      );
      expect(restored.code).toBe(Code.OK);
    } else {
      expect(r.code).toBe(Code.FAILED_PRECONDITION);
    }
  });
});

describe("ControllerPublish / Unpublish", () => {
  test("publish ×10 to the node is OK; publish_context names the host NQN", async () => {
    const v = (await create(volName("pub"))).volume;
    for (let i = 0; i < 10; i++) {
      const r = await c.ctl.controller.ControllerPublishVolume({
        volume_id: v.volume_id,
        node_id: c.nodeId,
        volume_capability: mountCap(),
        readonly: false,
      });
      expect(r.publish_context.hostNqn).toBe(c.nodeId.split("/").slice(1).join("/"));
    }
    for (let i = 0; i < 10; i++)
      await c.ctl.controller.ControllerUnpublishVolume({ volume_id: v.volume_id, node_id: c.nodeId });
  });

  test("unknown volume → NOT_FOUND", async () => {
    const r = await outcome(
      c.ctl.controller.ControllerPublishVolume({
        volume_id: UNKNOWN_VOLUME,
        node_id: c.nodeId,
        volume_capability: mountCap(),
        readonly: false,
      }),
    );
    expect(r.code).toBe(Code.NOT_FOUND);
  });

  test("malformed node id → NOT_FOUND", async () => {
    const v = (await create(volName("badnode"))).volume;
    const r = await outcome(
      c.ctl.controller.ControllerPublishVolume({
        volume_id: v.volume_id,
        node_id: "Not A Node!",
        volume_capability: mountCap(),
        readonly: false,
      }),
    );
    expect(r.code).toBe(Code.NOT_FOUND);
  });

  test("already published with an incompatible capability (readonly flips) → ALREADY_EXISTS", async () => {
    const v = (await create(volName("pubro"))).volume;
    await c.ctl.controller.ControllerPublishVolume({
      volume_id: v.volume_id,
      node_id: c.nodeId,
      volume_capability: mountCap(),
      readonly: false,
    });
    const r = await outcome(
      c.ctl.controller.ControllerPublishVolume({
        volume_id: v.volume_id,
        node_id: c.nodeId,
        volume_capability: mountCap(),
        readonly: true,
      }),
    );
    expect(r.code).toBe(Code.ALREADY_EXISTS);
    await c.ctl.controller.ControllerUnpublishVolume({ volume_id: v.volume_id, node_id: c.nodeId });
  });

  test("missing node_id / volume_capability → INVALID_ARGUMENT naming the field", async () => {
    const v = (await create(volName("pubargs"))).volume;
    const a = await outcome(
      c.ctl.controller.ControllerPublishVolume({ volume_id: v.volume_id, volume_capability: mountCap() }),
    );
    expect(a.code).toBe(Code.INVALID_ARGUMENT);
    expect(a.details).toContain("node_id");
    const b = await outcome(c.ctl.controller.ControllerPublishVolume({ volume_id: v.volume_id, node_id: c.nodeId }));
    expect(b.code).toBe(Code.INVALID_ARGUMENT);
    expect(b.details).toContain("volume_capability");
  });
});

describe("ControllerExpand / ValidateVolumeCapabilities / GetCapacity", () => {
  test("ControllerExpand unknown → NOT_FOUND", async () => {
    const r = await outcome(
      c.ctl.controller.ControllerExpandVolume({
        volume_id: UNKNOWN_VOLUME,
        capacity_range: { required_bytes: 2 * GiB },
      }),
    );
    expect(r.code).toBe(Code.NOT_FOUND);
  });

  test("ControllerExpand shrink → OUT_OF_RANGE; grow works and is idempotent", async () => {
    const v = (await create(volName("grow"), { capacity_range: { required_bytes: 2 * GiB } })).volume;
    const r = await outcome(
      c.ctl.controller.ControllerExpandVolume({
        volume_id: v.volume_id,
        capacity_range: { required_bytes: GiB, limit_bytes: GiB },
      }),
    );
    expect(r.code).toBe(Code.OUT_OF_RANGE);
    for (let i = 0; i < 3; i++) {
      const g = await c.ctl.controller.ControllerExpandVolume({
        volume_id: v.volume_id,
        capacity_range: { required_bytes: 3 * GiB },
        volume_capability: mountCap(),
      });
      expect(g.capacity_bytes).toBe(3 * GiB);
      expect(g.node_expansion_required).toBe(true);
    }
  });

  test("ControllerExpand beyond the maximum → OUT_OF_RANGE", async () => {
    const v = (await create(volName("growmax"))).volume;
    const r = await outcome(
      c.ctl.controller.ControllerExpandVolume({
        volume_id: v.volume_id,
        capacity_range: { required_bytes: 17 * 1024 * GiB },
      }),
    );
    expect(r.code).toBe(Code.OUT_OF_RANGE);
  });

  test("ValidateVolumeCapabilities unknown → NOT_FOUND; known → confirmed", async () => {
    const r = await outcome(
      c.ctl.controller.ValidateVolumeCapabilities({ volume_id: UNKNOWN_VOLUME, volume_capabilities: [mountCap()] }),
    );
    expect(r.code).toBe(Code.NOT_FOUND);
    const v = (await create(volName("validate"))).volume;
    const ok = await c.ctl.controller.ValidateVolumeCapabilities({
      volume_id: v.volume_id,
      volume_capabilities: [mountCap()],
    });
    expect(ok.confirmed.volume_capabilities.length).toBe(1);
    const block = await c.ctl.controller.ValidateVolumeCapabilities({
      volume_id: v.volume_id,
      volume_capabilities: [blockCap("MULTI_NODE_MULTI_WRITER")],
    });
    expect(block.confirmed.volume_capabilities.length).toBe(1);
  });

  test("GetCapacity reports free space and the GiB minimum", async () => {
    const cap = await c.ctl.controller.GetCapacity({});
    expect(cap.available_capacity).toBeGreaterThan(GiB);
    expect(cap.minimum_volume_size.value).toBe(GiB);
  });
});

describe("ListVolumes", () => {
  test("shows a new volume and drops a deleted one", async () => {
    const v = (await create(volName("list"))).volume;
    const ids = async () => (await c.ctl.controller.ListVolumes({})).entries.map((e: any) => e.volume.volume_id);
    expect(await ids()).toContain(v.volume_id);
    await c.ctl.controller.DeleteVolume({ volume_id: v.volume_id });
    expect(await ids()).not.toContain(v.volume_id);
  });

  test("invalid starting_token → ABORTED", async () => {
    const r = await outcome(c.ctl.controller.ListVolumes({ starting_token: "not-a-token" }));
    expect(r.code).toBe(Code.ABORTED);
  });

  test("pagination with max_entries walks every volume exactly once", async () => {
    for (let i = 0; i < 3; i++) await create(volName("page"));
    const all = (await c.ctl.controller.ListVolumes({})).entries.map((e: any) => e.volume.volume_id).sort();
    expect(all.length).toBeGreaterThanOrEqual(3);
    const seen: string[] = [];
    let token = "";
    for (let pages = 0; pages <= all.length; pages++) {
      const r = await c.ctl.controller.ListVolumes({ max_entries: 2, starting_token: token });
      expect(r.entries.length).toBeLessThanOrEqual(2);
      seen.push(...r.entries.map((e: any) => e.volume.volume_id));
      token = r.next_token;
      if (!token) break;
    }
    expect(token).toBe("");
    expect(seen.sort()).toEqual(all);
  });
});

describe("Snapshots", () => {
  test("create ×10 (same id), list by source and by id, restore, delete; DeleteSnapshot unknown → OK", async () => {
    const v = (await create(volName("snapsrc"))).volume;
    const name = volName("snap");
    const s = (await c.ctl.controller.CreateSnapshot({ name, source_volume_id: v.volume_id })).snapshot;
    expect(s.snapshot_id).toMatch(/^snap-/);
    expect(s.source_volume_id).toBe(v.volume_id);
    expect(s.ready_to_use).toBe(true);
    for (let i = 0; i < 10; i++)
      expect(
        (await c.ctl.controller.CreateSnapshot({ name, source_volume_id: v.volume_id })).snapshot.snapshot_id,
      ).toBe(s.snapshot_id);
    const bySource = (await c.ctl.controller.ListSnapshots({ source_volume_id: v.volume_id })).entries.map(
      (e: any) => e.snapshot.snapshot_id,
    );
    expect(bySource).toEqual([s.snapshot_id]);
    const byId = (await c.ctl.controller.ListSnapshots({ snapshot_id: s.snapshot_id })).entries;
    expect(byId.length).toBe(1);
    const restored = (
      await create(volName("restored"), { volume_content_source: { snapshot: { snapshot_id: s.snapshot_id } } })
    ).volume;
    expect(restored.content_source.snapshot.snapshot_id).toBe(s.snapshot_id);
    const clone = (await create(volName("clone"), { volume_content_source: { volume: { volume_id: v.volume_id } } }))
      .volume;
    expect(clone.content_source.volume.volume_id).toBe(v.volume_id);
    for (let i = 0; i < 3; i++)
      expect((await outcome(c.ctl.controller.DeleteSnapshot({ snapshot_id: s.snapshot_id }))).code).toBe(Code.OK);
    expect((await c.ctl.controller.ListSnapshots({ snapshot_id: s.snapshot_id })).entries.length).toBe(0);
    expect((await outcome(c.ctl.controller.DeleteSnapshot({ snapshot_id: UNKNOWN_SNAPSHOT }))).code).toBe(Code.OK);
  });

  test("same name, different source → ALREADY_EXISTS", async () => {
    const a = (await create(volName("snapa"))).volume;
    const b = (await create(volName("snapb"))).volume;
    const name = volName("snapname");
    await c.ctl.controller.CreateSnapshot({ name, source_volume_id: a.volume_id });
    const r = await outcome(c.ctl.controller.CreateSnapshot({ name, source_volume_id: b.volume_id }));
    expect(r.code).toBe(Code.ALREADY_EXISTS);
  });

  test("source volume unknown → NOT_FOUND; missing name → INVALID_ARGUMENT naming it; invalid token → ABORTED", async () => {
    expect(
      (await outcome(c.ctl.controller.CreateSnapshot({ name: volName("nosrc"), source_volume_id: UNKNOWN_VOLUME })))
        .code,
    ).toBe(Code.NOT_FOUND);
    const r = await outcome(c.ctl.controller.CreateSnapshot({ source_volume_id: UNKNOWN_VOLUME }));
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.details).toContain("name");
    expect((await outcome(c.ctl.controller.ListSnapshots({ starting_token: "bogus" }))).code).toBe(Code.ABORTED);
  });
});
