import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { isDomainError } from "../../src/runtime/errors.ts";
import { snapshotIdForName, volumeIdForName } from "../../src/backends/ids.ts";
import { findOrphans } from "../../src/backends/orphans.ts";
import type { VolumeParams } from "../../src/backends/backend.ts";
import { fileFixture, routerOsFixture, type BackendFixture, type RouterOsFixtureOptions } from "./harness.ts";

const GiB = 2 ** 30;
const VP = "/storage-pool/metal-csi";
const params: VolumeParams = {
  volumePath: VP,
  nvmePort: 4420,
  ctrlLossTmo: -1,
  reconnectDelay: 5,
  keepAliveTmo: 0,
  fsType: "ext4",
};

/** The first bytes of a (large, sparse) file without reading all of it. */
function head(path: string, n: number): string {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 0);
    return buf.toString();
  } finally {
    closeSync(fd);
  }
}

async function kindOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return isDomainError(e) ? e.kind : `non-domain: ${String(e)}`;
  }
}

/**
 * The RouterOS field-availability modes: the `/disk` reference lists none of `comment`,
 * `creation-time`, `status`, so the suite must hold without each of them and without all three.
 */
const ROUTEROS_MODES: { name: string; sim: RouterOsFixtureOptions }[] = [
  { name: "routeros", sim: {} },
  { name: "routeros, no comment", sim: { fields: { comment: false } } },
  { name: "routeros, no creation-time", sim: { fields: { creationTime: false } } },
  { name: "routeros, no status", sim: { fields: { status: false } } },
  {
    name: "routeros, only documented fields, no /file times",
    sim: { fields: { comment: false, creationTime: false, status: false }, fileTimes: false },
  },
];

/** One suite, two backends (the RouterOS one in every field mode): whatever the controller relies on must hold for all. */
for (const variant of [{ name: "file", sim: undefined }, ...ROUTEROS_MODES]) {
  const kind = variant.sim ? ("routeros" as const) : ("file" as const);
  describe(`backend contract: ${variant.name}`, () => {
    let f: BackendFixture;
    beforeAll(async () => {
      f = kind === "file" ? await fileFixture() : await routerOsFixture({ copyMs: 30, ...variant.sim });
    });
    afterAll(async () => {
      await f.close();
    });
    /** Is the backing file of this disk present where the backend keeps it? */
    const fileExists = (path: string) =>
      kind === "file" ? existsSync(path) : f.sim!.state.files().some((x) => x.name === path.replace(/^\//, ""));

    test("create is idempotent by id and shows up in get and list", async () => {
      const id = volumeIdForName("contract-a");
      const a = await f.backend.createDisk({ id, sizeBytes: GiB, volumePath: VP, meta: { paramsDigest: "d1" } });
      const b = await f.backend.createDisk({ id, sizeBytes: GiB, volumePath: VP, meta: { paramsDigest: "d1" } });
      expect(a.id).toBe(id);
      expect(b).toEqual(a);
      expect(a.sizeBytes).toBe(GiB);
      expect(a.meta.paramsDigest).toBe("d1");
      expect(fileExists(a.filePath)).toBe(true);
      expect((await f.backend.getDisk(id))?.sizeBytes).toBe(GiB);
      expect((await f.backend.listDisks()).filter((d) => d.id === id)).toHaveLength(1);
      expect(await f.backend.getDisk(volumeIdForName("never-made"))).toBeNull();
    });

    test("grow grows and never shrinks", async () => {
      const id = volumeIdForName("contract-grow");
      await f.backend.createDisk({ id, sizeBytes: GiB, volumePath: VP, meta: {} });
      expect((await f.backend.growDisk(id, 3 * GiB)).sizeBytes).toBe(3 * GiB);
      expect((await f.backend.growDisk(id, 2 * GiB)).sizeBytes).toBe(3 * GiB);
      expect(await kindOf(f.backend.growDisk(volumeIdForName("nope"), 2 * GiB))).toBe("not-found");
    });

    test("capacity reports total and free", async () => {
      const c = await f.backend.capacity(VP);
      expect(c.totalBytes).toBeGreaterThan(0);
      expect(c.freeBytes).toBeGreaterThan(0);
      expect(c.freeBytes).toBeLessThanOrEqual(c.totalBytes);
    });

    test("snapshot, restore and clone carry the source and may be larger", async () => {
      const vol = volumeIdForName("contract-src");
      const d = await f.backend.createDisk({ id: vol, sizeBytes: GiB, volumePath: VP, meta: {} });
      if (kind === "file") writeFileSync(d.filePath, "payload-before-snapshot", { flag: "r+" });
      const snapId = snapshotIdForName("contract-snap");
      const s = await f.backend.createSnapshot(snapId, vol, VP);
      expect(s).toMatchObject({ id: snapId, sourceVolumeId: vol, sizeBytes: GiB, readyToUse: true });
      // CSI: creation_time is the real time the snapshot was cut, and it does not move.
      expect(s.createdAt).toBeGreaterThan(Date.now() - 3_600_000);
      expect((await f.backend.createSnapshot(snapId, vol, VP)).id).toBe(snapId);
      expect((await f.backend.listSnapshots()).find((x) => x.id === snapId)).toMatchObject({
        createdAt: s.createdAt,
        sourceVolumeId: vol,
      });
      expect((await f.backend.getSnapshot(snapId))?.createdAt).toBe(s.createdAt);
      if (kind === "file") writeFileSync(d.filePath, "payload-AFTER--snapshot", { flag: "r+" });

      const restored = await f.backend.createDisk({
        id: volumeIdForName("contract-restore"),
        sizeBytes: 2 * GiB,
        volumePath: VP,
        source: { kind: "snapshot", id: snapId },
        meta: { source: snapId },
      });
      expect(restored).toMatchObject({ sizeBytes: 2 * GiB, copying: false, meta: { source: snapId } });
      const clone = await f.backend.createDisk({
        id: volumeIdForName("contract-clone"),
        sizeBytes: GiB,
        volumePath: VP,
        source: { kind: "volume", id: vol },
        meta: { source: vol },
      });
      expect(clone.meta.source).toBe(vol);
      if (kind === "file") {
        expect(head(restored.filePath, 23)).toBe("payload-before-snapshot");
        expect(head(clone.filePath, 23)).toBe("payload-AFTER--snapshot");
      }
      expect(
        await kindOf(
          f.backend.createDisk({
            id: volumeIdForName("contract-bad-src"),
            sizeBytes: GiB,
            volumePath: VP,
            source: { kind: "snapshot", id: snapshotIdForName("missing") },
            meta: {},
          }),
        ),
      ).toBe("not-found");
      expect(
        await kindOf(f.backend.createSnapshot(snapshotIdForName("contract-snap-2"), volumeIdForName("missing"), VP)),
      ).toBe("not-found");

      await f.backend.deleteSnapshot(snapId);
      await f.backend.deleteSnapshot(snapId);
      expect(await f.backend.getSnapshot(snapId)).toBeNull();
      // A restored volume does not depend on its snapshot.
      expect((await f.backend.getDisk(restored.id))?.sizeBytes).toBe(2 * GiB);
    });

    test("delete removes the disk and its backing file; a missing disk is fine", async () => {
      const id = volumeIdForName("contract-del");
      const d = await f.backend.createDisk({ id, sizeBytes: GiB, volumePath: VP, meta: {} });
      expect(fileExists(d.filePath)).toBe(true);
      await f.backend.deleteDisk(id);
      expect(await f.backend.getDisk(id)).toBeNull();
      expect(fileExists(d.filePath)).toBe(false);
      await f.backend.deleteDisk(id);
      await f.backend.deleteDisk("pvc-not-a-uuid");
    });

    test("publications and the export restriction are recorded", async () => {
      const id = volumeIdForName("contract-pub");
      await f.backend.createDisk({ id, sizeBytes: GiB, volumePath: VP, meta: { paramsDigest: "p" } });
      const host = "nqn.2014-08.org.nvmexpress:uuid:node-a";
      const d = await f.backend.setPublications(
        id,
        { paramsDigest: "p", publishedTo: [`node-a/${host}`], publishMode: "SINGLE_NODE_WRITER" },
        [host],
      );
      expect(d.allowedHosts).toEqual([host]);
      expect(d.meta).toEqual({ paramsDigest: "p", publishedTo: [`node-a/${host}`], publishMode: "SINGLE_NODE_WRITER" });
      expect((await f.backend.getDisk(id))?.meta.publishedTo).toEqual([`node-a/${host}`]);
      if (kind === "routeros") {
        expect(f.sim!.state.disks().find((r) => r.slot === id)?.["nvme-tcp-server-allow-host-name"]).toBe(host);
      }
    });

    test("a disk larger than the free space is resource-exhausted and leaves nothing", async () => {
      const id = volumeIdForName("contract-huge");
      if (kind === "routeros") f.sim!.state.setPoolBytes(2 ** 40 - f.sim!.state.poolFree() + 20 * GiB);
      const free = (await f.backend.capacity(VP)).freeBytes;
      expect(await kindOf(f.backend.createDisk({ id, sizeBytes: free + GiB, volumePath: VP, meta: {} }))).toBe(
        "resource-exhausted",
      );
      expect(await f.backend.getDisk(id)).toBeNull();
      if (kind === "routeros") f.sim!.state.setPoolBytes(2 ** 40);
    });

    test("volume_context follows the cross-team contract", async () => {
      const d = (await f.backend.getDisk(volumeIdForName("contract-a")))!;
      const ctx = f.backend.volumeContext(d, params);
      if (kind === "file") {
        expect(ctx).toEqual({ transport: "loop", backingFile: d.filePath });
        expect(d.filePath.startsWith("/")).toBe(true);
      } else {
        expect(ctx).toEqual({
          transport: "nvme-tcp",
          nqn: `nqn.2000-02.com.mikrotik:${d.id}`,
          nvmeAddress: "127.0.0.1",
          nvmePort: "4420",
          volumePath: VP,
          ctrlLossTmo: "-1",
          reconnectDelay: "5",
          keepAliveTmo: "0",
        });
      }
    });

    // A router that shows no time at all (neither on /disk nor on /file): the age of a disk is unknown,
    // and "could not tell" keeps it.
    const timeless = variant.sim?.fields?.creationTime === false && variant.sim.fileTimes === false;

    test("orphan report: unreferenced, old, unpublished disks with the prefix only", async () => {
      const all = await f.backend.listDisks();
      if (timeless) {
        const r = await findOrphans(f.backend, {
          referencedVolumeIds: new Set(),
          slotPrefix: "pvc-",
          graceMs: 0,
          now: Date.now() + 3_600_000,
        });
        expect(r.candidates).toEqual([]);
        expect(new Set(r.kept.map((k) => k.reason))).toContain("creation time unknown");
        return;
      }
      const referenced = new Set([volumeIdForName("contract-a")]);
      const later = Date.now() + 3_600_000;
      const r = await findOrphans(f.backend, {
        referencedVolumeIds: referenced,
        slotPrefix: "pvc-",
        graceMs: 60_000,
        now: later,
      });
      const ids = r.candidates.map((c) => c.volumeId);
      expect(ids).not.toContain(volumeIdForName("contract-a"));
      expect(ids).not.toContain(volumeIdForName("contract-pub"));
      expect(ids).toContain(volumeIdForName("contract-grow"));
      expect(ids.length + r.kept.length).toBe(all.length);
      expect(
        (
          await findOrphans(f.backend, {
            referencedVolumeIds: new Set(),
            slotPrefix: "pvc-",
            graceMs: 60_000,
            now: Date.now(),
          })
        ).candidates,
      ).toEqual([]);
      expect(r.strayFiles).toEqual([]);
      expect(
        (await findOrphans(f.backend, { referencedVolumeIds: undefined, slotPrefix: "pvc-", graceMs: 0, now: later }))
          .candidates,
      ).toEqual([]);
    });

    if (kind === "routeros") {
      test("stray backing files (disk gone, file left) are reported, referenced ones are not", async () => {
        const id = volumeIdForName("contract-stray");
        const kept = volumeIdForName("contract-stray-referenced");
        for (const v of [id, kept]) {
          f.sim!.state.seedDisk({
            slot: `tmp-${v}`,
            "file-path": `/storage-pool/metal-csi/${v}.img`,
            "file-size": String(GiB),
          });
        }
        // The disks go, the files stay: what a half-finished delete leaves.
        for (const d of f.sim!.state.disks().filter((x) => x.slot?.startsWith("tmp-"))) {
          await fetch(`${f.sim!.url}/rest/disk/${encodeURIComponent(d[".id"]!)}`, {
            method: "DELETE",
            headers: { authorization: `Basic ${Buffer.from(`${f.sim!.user}:${f.sim!.password}`).toString("base64")}` },
            tls: { ca: readFileSync(f.sim!.caFile, "utf8") },
          } as RequestInit);
        }
        const r = await findOrphans(f.backend, {
          referencedVolumeIds: new Set([kept]),
          slotPrefix: "pvc-",
          graceMs: 1_000,
          now: Date.now() + 3_600_000,
        });
        if (timeless) return expect(r.strayFiles).toEqual([]);
        expect(r.strayFiles.map((s) => s.volumeId)).toEqual([id]);
        expect(r.strayFiles[0]!.path).toBe(`/storage-pool/metal-csi/${id}.img`);
      });
    }
  });
}
