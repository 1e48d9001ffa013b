import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { fileFixture, routerOsFixture, type BackendFixture } from "../backends/harness.ts";
import { Code, GiB, blockCap, codeOf, mountCap, startController, type ControllerFixture } from "./harness.ts";

const HOST_A = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001";
const HOST_B = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-4000-8000-000000000002";
const NODE_A = `node-a/${HOST_A}`;
const NODE_B = `node-b/${HOST_B}`;

/** The full Controller lifecycle over real gRPC, on both backends. */
for (const kind of ["file", "routeros"] as const) {
  describe(`controller over gRPC: ${kind}`, () => {
    let f: BackendFixture;
    let c: ControllerFixture;
    beforeAll(async () => {
      f = kind === "file" ? await fileFixture() : await routerOsFixture({ copyMs: 30 });
      c = await startController(f);
    });
    afterAll(async () => {
      await c.close();
      await f.close();
    });
    const ctl = () => c.ctl;
    const create = (name: string, extra: Record<string, unknown> = {}) =>
      ctl().CreateVolume({
        name,
        capacity_range: { required_bytes: GiB },
        volume_capabilities: [mountCap()],
        parameters: {},
        ...extra,
      });
    const diskCount = async () => (await f.backend.listDisks()).length;

    test("identity: name, version, probe ready, capabilities", async () => {
      const info = await c.identity.GetPluginInfo({});
      expect(info.name).toBe("rds.csi.srvlab.io");
      expect(info.vendor_version).not.toBe("");
      expect((await c.identity.Probe({})).ready.value).toBe(true);
      const caps = (await ctl().ControllerGetCapabilities({})).capabilities.map((x: any) => x.rpc.type);
      for (const want of [
        "CREATE_DELETE_VOLUME",
        "PUBLISH_UNPUBLISH_VOLUME",
        "LIST_VOLUMES",
        "GET_CAPACITY",
        "CREATE_DELETE_SNAPSHOT",
        "LIST_SNAPSHOTS",
        "CLONE_VOLUME",
        "EXPAND_VOLUME",
        "GET_VOLUME",
      ]) {
        expect(caps).toContain(want);
      }
    });

    test("CreateVolume ×10 with one name gives one volume", async () => {
      const before = await diskCount();
      const ids = new Set<string>();
      for (let i = 0; i < 10; i++) ids.add((await create("pvc-repeat")).volume.volume_id);
      expect(ids.size).toBe(1);
      expect(await diskCount()).toBe(before + 1);
      const [id] = [...ids];
      expect(id).toMatch(/^pvc-[0-9a-f-]{36}$/);
      const v = (await create("pvc-repeat")).volume;
      expect(v.capacity_bytes).toBe(GiB);
      if (kind === "file") expect(v.volume_context).toMatchObject({ transport: "loop" });
      else
        expect(v.volume_context).toMatchObject({
          transport: "nvme-tcp",
          nqn: `nqn.2000-02.com.mikrotik:${id}`,
          nvmePort: "4420",
          volumePath: "/storage-pool/metal-csi",
        });
    });

    test("concurrent CreateVolume calls for one name never make two disks", async () => {
      const before = await diskCount();
      const rs = await Promise.all(Array.from({ length: 8 }, () => create("pvc-concurrent")));
      expect(new Set(rs.map((r) => r.volume.volume_id)).size).toBe(1);
      expect(await diskCount()).toBe(before + 1);
    });

    test("names: 128 characters work, 129 and junk are INVALID_ARGUMENT", async () => {
      expect((await create("n".repeat(128))).volume.volume_id).toMatch(/^pvc-/);
      expect(await codeOf(create("n".repeat(129)))).toBe(Code.INVALID_ARGUMENT);
      expect(await codeOf(create('bad"name;rm -rf'))).toBe(Code.INVALID_ARGUMENT);
      expect(await codeOf(create(""))).toBe(Code.INVALID_ARGUMENT);
      expect(await codeOf(ctl().CreateVolume({ name: "no-caps", volume_capabilities: [] }))).toBe(
        Code.INVALID_ARGUMENT,
      );
    });

    test("sizes: GiB rounding inside the range, exact required==limit, OUT_OF_RANGE when impossible", async () => {
      const size = async (name: string, range: object) =>
        (await create(name, { capacity_range: range })).volume.capacity_bytes;
      expect(await size("sz-min", { required_bytes: 1 })).toBe(GiB);
      expect(await size("sz-round", { required_bytes: GiB + 1, limit_bytes: 3 * GiB })).toBe(2 * GiB);
      expect(await size("sz-exact", { required_bytes: 5 * GiB, limit_bytes: 5 * GiB })).toBe(5 * GiB);
      expect(await size("sz-none", {})).toBe(GiB);
      expect(
        await codeOf(create("sz-frac", { capacity_range: { required_bytes: 1.5 * GiB, limit_bytes: 1.5 * GiB } })),
      ).toBe(Code.OUT_OF_RANGE);
      expect(
        await codeOf(create("sz-inverted", { capacity_range: { required_bytes: 3 * GiB, limit_bytes: 2 * GiB } })),
      ).toBe(Code.OUT_OF_RANGE);
      expect(await codeOf(create("sz-tiny-limit", { capacity_range: { limit_bytes: GiB / 2 } }))).toBe(
        Code.OUT_OF_RANGE,
      );
      expect(await codeOf(create("sz-huge", { capacity_range: { required_bytes: 17 * 2 ** 40 } }))).toBe(
        Code.OUT_OF_RANGE,
      );
    });

    test("incompatible repeats are ALREADY_EXISTS", async () => {
      await create("pvc-compat");
      expect(await codeOf(create("pvc-compat", { capacity_range: { required_bytes: 2 * GiB } }))).toBe(
        Code.ALREADY_EXISTS,
      );
      expect(await codeOf(create("pvc-compat", { parameters: { nvmePort: "4421" } }))).toBe(Code.ALREADY_EXISTS);
      expect(
        (await create("pvc-compat", { capacity_range: { required_bytes: 1, limit_bytes: 4 * GiB } })).volume
          .capacity_bytes,
      ).toBe(GiB);
    });

    test("parameters are validated: no path traversal, no unknown keys", async () => {
      for (const volumePath of [
        "../etc",
        "/storage-pool/../etc",
        "/storage-pool/metal-csi/",
        "/storage-pool/a b",
        "relative/path",
        "/storage-pool",
      ]) {
        expect(await codeOf(create("pvc-params", { parameters: { volumePath } }))).toBe(Code.INVALID_ARGUMENT);
      }
      expect(await codeOf(create("pvc-params", { parameters: { nvmePort: "70000" } }))).toBe(Code.INVALID_ARGUMENT);
      expect(await codeOf(create("pvc-params", { parameters: { volumPath: "/storage-pool/x" } }))).toBe(
        Code.INVALID_ARGUMENT,
      );
      expect(await codeOf(create("pvc-params", { parameters: { rdsAddress: "10.9.9.9" } }))).toBe(
        Code.INVALID_ARGUMENT,
      );
      expect(await codeOf(create("pvc-params", { volume_capabilities: [mountCap("MULTI_NODE_MULTI_WRITER")] }))).toBe(
        Code.INVALID_ARGUMENT,
      );
      const ok = await create("pvc-params", {
        parameters: {
          rdsAddress: "127.0.0.1",
          "csi.storage.k8s.io/pvc/name": "x",
          "csi.storage.k8s.io/fstype": "xfs",
          ctrlLossTmo: "600",
        },
      });
      expect(ok.volume.volume_id).toMatch(/^pvc-/);
    });

    test("ValidateVolumeCapabilities, ControllerGetVolume and GetCapacity", async () => {
      const id = (await create("pvc-validate")).volume.volume_id;
      const r = await ctl().ValidateVolumeCapabilities({ volume_id: id, volume_capabilities: [mountCap()] });
      expect(r.confirmed.volume_capabilities).toHaveLength(1);
      const no = await ctl().ValidateVolumeCapabilities({
        volume_id: id,
        volume_capabilities: [mountCap("MULTI_NODE_MULTI_WRITER")],
      });
      expect(no.confirmed).toBeNull();
      expect(no.message).toMatch(/block/);
      expect(
        await codeOf(
          ctl().ValidateVolumeCapabilities({
            volume_id: "pvc-00000000-0000-4000-8000-000000000000",
            volume_capabilities: [mountCap()],
          }),
        ),
      ).toBe(Code.NOT_FOUND);
      expect(await codeOf(ctl().ValidateVolumeCapabilities({ volume_id: id, volume_capabilities: [] }))).toBe(
        Code.INVALID_ARGUMENT,
      );
      expect((await ctl().ControllerGetVolume({ volume_id: id })).volume.capacity_bytes).toBe(GiB);
      expect(await codeOf(ctl().ControllerGetVolume({ volume_id: "pvc-00000000-0000-4000-8000-000000000000" }))).toBe(
        Code.NOT_FOUND,
      );
      const cap = await ctl().GetCapacity({ parameters: {} });
      expect(cap.available_capacity).toBeGreaterThan(0);
      expect(cap.minimum_volume_size.value).toBe(GiB);
    });

    test("ListVolumes pages through everything; an invalid token is ABORTED; deleted volumes drop out", async () => {
      const made = [];
      for (let i = 0; i < 5; i++) made.push((await create(`pvc-list-${i}`)).volume.volume_id);
      const seen: string[] = [];
      let token = "";
      let pages = 0;
      do {
        const r = await ctl().ListVolumes({ max_entries: 2, starting_token: token });
        expect(r.entries.length).toBeLessThanOrEqual(2);
        seen.push(...r.entries.map((e: any) => e.volume.volume_id));
        token = r.next_token;
        pages++;
      } while (token);
      expect(pages).toBeGreaterThan(2);
      expect(new Set(seen).size).toBe(seen.length);
      for (const id of made) expect(seen).toContain(id);
      expect(seen.length).toBe(await diskCount());
      expect(await codeOf(ctl().ListVolumes({ max_entries: 2, starting_token: "garbage-token" }))).toBe(Code.ABORTED);
      await ctl().DeleteVolume({ volume_id: made[0] });
      const after = (await ctl().ListVolumes({})).entries.map((e: any) => e.volume.volume_id);
      expect(after).not.toContain(made[0]);
    });

    test("ControllerExpandVolume grows, needs node expansion for filesystems, refuses shrink", async () => {
      const id = (await create("pvc-expand")).volume.volume_id;
      const r = await ctl().ControllerExpandVolume({
        volume_id: id,
        capacity_range: { required_bytes: 3 * GiB },
        volume_capability: mountCap(),
      });
      expect(r).toMatchObject({ capacity_bytes: 3 * GiB, node_expansion_required: true });
      const b = await ctl().ControllerExpandVolume({
        volume_id: id,
        capacity_range: { required_bytes: 4 * GiB },
        volume_capability: blockCap(),
      });
      expect(b).toMatchObject({ capacity_bytes: 4 * GiB, node_expansion_required: false });
      expect(
        (await ctl().ControllerExpandVolume({ volume_id: id, capacity_range: { required_bytes: 2 * GiB } }))
          .capacity_bytes,
      ).toBe(4 * GiB);
      expect(
        await codeOf(
          ctl().ControllerExpandVolume({
            volume_id: id,
            capacity_range: { required_bytes: GiB, limit_bytes: 2 * GiB },
          }),
        ),
      ).toBe(Code.OUT_OF_RANGE);
      expect(
        await codeOf(
          ctl().ControllerExpandVolume({
            volume_id: "pvc-00000000-0000-4000-8000-000000000000",
            capacity_range: { required_bytes: GiB },
          }),
        ),
      ).toBe(Code.NOT_FOUND);
    });

    test("publish restricts the export to the node's host NQN; single-writer elsewhere is FAILED_PRECONDITION", async () => {
      const id = (await create("pvc-publish")).volume.volume_id;
      const pub = (node_id: string, cap = mountCap(), readonly = false) =>
        ctl().ControllerPublishVolume({ volume_id: id, node_id, volume_capability: cap, readonly });
      expect((await pub(NODE_A)).publish_context).toEqual({ hostNqn: HOST_A });
      expect((await f.backend.getDisk(id))!.allowedHosts).toEqual([HOST_A]);
      if (kind === "routeros")
        expect(f.sim!.state.disks().find((d) => d.slot === id)!["nvme-tcp-server-allow-host-name"]).toBe(HOST_A);
      expect(await codeOf(pub(NODE_A))).toBe(Code.OK);
      expect(await codeOf(pub(NODE_A, mountCap(), true))).toBe(Code.ALREADY_EXISTS);
      expect(await codeOf(pub(NODE_B))).toBe(Code.FAILED_PRECONDITION);
      expect(await codeOf(ctl().DeleteVolume({ volume_id: id }))).toBe(Code.FAILED_PRECONDITION);
      expect(await codeOf(pub("not a node/???"))).toBe(Code.NOT_FOUND);
      expect(
        await codeOf(
          ctl().ControllerPublishVolume({
            volume_id: "pvc-00000000-0000-4000-8000-000000000000",
            node_id: NODE_A,
            volume_capability: mountCap(),
          }),
        ),
      ).toBe(Code.NOT_FOUND);
      expect(
        await codeOf(ctl().ControllerPublishVolume({ volume_id: id, node_id: "", volume_capability: mountCap() })),
      ).toBe(Code.INVALID_ARGUMENT);
      const listed = (await ctl().ListVolumes({})).entries.find((e: any) => e.volume.volume_id === id);
      expect(listed.status.published_node_ids).toEqual([NODE_A]);

      await ctl().ControllerUnpublishVolume({ volume_id: id, node_id: NODE_A });
      await ctl().ControllerUnpublishVolume({ volume_id: id, node_id: NODE_A });
      expect((await f.backend.getDisk(id))!.meta.publishedTo ?? []).toEqual([]);
      expect(await codeOf(pub(NODE_B))).toBe(Code.OK);
      expect((await f.backend.getDisk(id))!.allowedHosts).toEqual([HOST_B]);
      await ctl().ControllerUnpublishVolume({ volume_id: id, node_id: NODE_B });
      await ctl().ControllerUnpublishVolume({ volume_id: "pvc-00000000-0000-4000-8000-000000000000", node_id: NODE_B });
      expect(await codeOf(ctl().DeleteVolume({ volume_id: id }))).toBe(Code.OK);
    });

    test("live migration: a multi-writer block volume on two hosts is open while both hold it", async () => {
      const id = (await create("pvc-migrate", { volume_capabilities: [blockCap("MULTI_NODE_MULTI_WRITER")] })).volume
        .volume_id;
      const pub = (node_id: string) =>
        ctl().ControllerPublishVolume({
          volume_id: id,
          node_id,
          volume_capability: blockCap("MULTI_NODE_MULTI_WRITER"),
        });
      await pub(NODE_A);
      expect((await f.backend.getDisk(id))!.allowedHosts).toEqual([HOST_A]);
      await pub(NODE_B);
      expect((await f.backend.getDisk(id))!.allowedHosts).toEqual([]);
      await ctl().ControllerUnpublishVolume({ volume_id: id, node_id: NODE_A });
      expect((await f.backend.getDisk(id))!.allowedHosts).toEqual([HOST_B]);
      expect((await f.backend.getDisk(id))!.meta.publishedTo).toEqual([NODE_B]);
      expect(
        await codeOf(
          ctl().ControllerPublishVolume({
            volume_id: id,
            node_id: NODE_A,
            volume_capability: blockCap("SINGLE_NODE_WRITER"),
          }),
        ),
      ).toBe(Code.FAILED_PRECONDITION);
    });

    test("snapshots: idempotent, filtered, paged, restorable; DeleteSnapshot of a missing one is OK", async () => {
      const src = (await create("pvc-snapsrc")).volume.volume_id;
      const other = (await create("pvc-snapother")).volume.volume_id;
      const s1 = (await ctl().CreateSnapshot({ name: "snap-one", source_volume_id: src })).snapshot;
      expect(s1).toMatchObject({ source_volume_id: src, ready_to_use: true, size_bytes: GiB });
      expect(s1.snapshot_id).toMatch(/^snap-/);
      expect((await ctl().CreateSnapshot({ name: "snap-one", source_volume_id: src })).snapshot.snapshot_id).toBe(
        s1.snapshot_id,
      );
      expect(await codeOf(ctl().CreateSnapshot({ name: "snap-one", source_volume_id: other }))).toBe(
        Code.ALREADY_EXISTS,
      );
      expect(
        await codeOf(
          ctl().CreateSnapshot({ name: "snap-missing", source_volume_id: "pvc-00000000-0000-4000-8000-000000000000" }),
        ),
      ).toBe(Code.NOT_FOUND);
      const s2 = (await ctl().CreateSnapshot({ name: "snap-two", source_volume_id: other })).snapshot;
      const s3 = (await ctl().CreateSnapshot({ name: "snap-three", source_volume_id: src })).snapshot;
      expect(
        (await ctl().ListSnapshots({ source_volume_id: src })).entries.map((e: any) => e.snapshot.snapshot_id).sort(),
      ).toEqual([s1.snapshot_id, s3.snapshot_id].sort());
      expect((await ctl().ListSnapshots({ snapshot_id: s2.snapshot_id })).entries).toHaveLength(1);
      expect(
        (await ctl().ListSnapshots({ snapshot_id: "snap-00000000-0000-4000-8000-000000000000" })).entries,
      ).toHaveLength(0);
      const p1 = await ctl().ListSnapshots({ max_entries: 2 });
      const p2 = await ctl().ListSnapshots({ max_entries: 2, starting_token: p1.next_token });
      expect([...p1.entries, ...p2.entries].map((e: any) => e.snapshot.snapshot_id).sort()).toEqual(
        [s1, s2, s3].map((s) => s.snapshot_id).sort(),
      );
      expect(await codeOf(ctl().ListSnapshots({ starting_token: "nope" }))).toBe(Code.ABORTED);

      const restored = (
        await create("pvc-restored", {
          capacity_range: { required_bytes: 2 * GiB },
          volume_content_source: { snapshot: { snapshot_id: s1.snapshot_id } },
        })
      ).volume;
      expect(restored).toMatchObject({
        capacity_bytes: 2 * GiB,
        content_source: { snapshot: { snapshot_id: s1.snapshot_id } },
      });
      expect(
        await codeOf(
          create("pvc-restored", {
            capacity_range: { required_bytes: 2 * GiB },
            volume_content_source: { snapshot: { snapshot_id: s3.snapshot_id } },
          }),
        ),
      ).toBe(Code.ALREADY_EXISTS);
      expect(await codeOf(create("pvc-restored"))).toBe(Code.ALREADY_EXISTS);
      const clone = (await create("pvc-clone", { volume_content_source: { volume: { volume_id: src } } })).volume;
      expect(clone.content_source).toMatchObject({ volume: { volume_id: src } });
      expect(
        await codeOf(
          create("pvc-from-nothing", {
            volume_content_source: { snapshot: { snapshot_id: "snap-00000000-0000-4000-8000-000000000000" } },
          }),
        ),
      ).toBe(Code.NOT_FOUND);
      expect(
        await codeOf(
          create("pvc-from-nowhere", {
            volume_content_source: { volume: { volume_id: "pvc-00000000-0000-4000-8000-000000000000" } },
          }),
        ),
      ).toBe(Code.NOT_FOUND);

      for (const s of [s1, s2, s3]) await ctl().DeleteSnapshot({ snapshot_id: s.snapshot_id });
      await ctl().DeleteSnapshot({ snapshot_id: s1.snapshot_id });
      await ctl().DeleteSnapshot({ snapshot_id: "not-even-an-id" });
      expect((await ctl().ListSnapshots({})).entries).toHaveLength(0);
    });

    test("DeleteVolume removes the disk; missing or malformed ids are OK", async () => {
      const id = (await create("pvc-delete")).volume.volume_id;
      const path = (await f.backend.getDisk(id))!.filePath;
      for (let i = 0; i < 3; i++) expect(await codeOf(ctl().DeleteVolume({ volume_id: id }))).toBe(Code.OK);
      expect(await f.backend.getDisk(id)).toBeNull();
      if (kind === "routeros") expect(f.sim!.state.files().some((x) => x.name === path.slice(1))).toBe(false);
      else expect(await Bun.file(path).exists()).toBe(false);
      expect(await codeOf(ctl().DeleteVolume({ volume_id: "pvc-../../etc/passwd" }))).toBe(Code.OK);
      expect(await codeOf(ctl().DeleteVolume({ volume_id: "" }))).toBe(Code.INVALID_ARGUMENT);
    });
  });
}
