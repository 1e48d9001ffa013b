import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findNamespaceByNqn, listSubsystems, lookupNqn, nativeMultipath } from "../../src/nvme/sysfs.ts";
import { systemVolumeNqns } from "../../src/nvme/system-volumes.ts";
import { parseMountinfo } from "../../src/mount/mountinfo.ts";
import { makeFakeSysfs, orphan, renumber } from "../helpers/fake-sysfs.ts";

const PVC = "nqn.2000-02.com.mikrotik:pvc-11111111-2222-3333-4444-555555555555";
const ROOT_VOL = "nqn.2000-02.com.mikrotik:nixos-node1-root";
let dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "rds-sysfs-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
  dirs = [];
});

describe("sysfs discovery", () => {
  test("lists subsystems with controllers and namespaces", async () => {
    const root = tmp();
    makeFakeSysfs(root, [
      { nqn: ROOT_VOL, namespaces: [{ dev: "259:0", sizeBytes: 8 * 2 ** 30 }] },
      {
        nqn: PVC,
        controllers: [{ state: "live", transport: "tcp", address: "traddr=10.0.0.5,trsvcid=4420" }],
        namespaces: [{ dev: "259:7" }],
      },
    ]);
    const subs = await listSubsystems(root, { timeoutMs: 2000 });
    expect(subs.map((s) => s.nqn)).toEqual([ROOT_VOL, PVC]);
    const pvc = subs[1]!;
    expect(pvc.name).toBe("nvme-subsys1");
    expect(pvc.iopolicy).toBe("numa");
    expect(pvc.controllers).toEqual([
      { name: "nvme1", state: "live", transport: "tcp", address: "traddr=10.0.0.5,trsvcid=4420", subsysnqn: PVC },
    ]);
    expect(pvc.namespaces).toEqual([{ name: "nvme1n1", dev: "259:7", sizeBytes: 1 << 30 }]);
    expect(subs[0]!.namespaces[0]!.sizeBytes).toBe(8 * 2 ** 30);
  });

  test("prefers the multipath head nvmeXnY over per-path nvmeXcYnZ", async () => {
    const root = tmp();
    makeFakeSysfs(root, [{ nqn: PVC, multipathStyle: true, controllers: [{}, {}], namespaces: [{ dev: "259:3" }] }]);
    const ns = await findNamespaceByNqn(root, PVC);
    expect(ns?.name).toBe("nvme0n1");
    expect(ns?.dev).toBe("259:3");
    const subs = await listSubsystems(root);
    expect(subs[0]!.controllers.map((c) => c.name)).toEqual(["nvme0", "nvme1"]);
    expect(await nativeMultipath(root)).toBe(true);
  });

  test("renumbering is followed by NQN", async () => {
    const root = tmp();
    makeFakeSysfs(root, [{ nqn: ROOT_VOL }, { nqn: PVC, namespaces: [{ dev: "259:9" }] }]);
    expect((await findNamespaceByNqn(root, PVC))?.name).toBe("nvme1n1");
    const after = renumber(root, PVC);
    const ns = await findNamespaceByNqn(root, PVC);
    expect(ns?.name).toBe(after.namespaces[0]!);
    expect(ns?.name).not.toBe("nvme1n1");
    expect(ns?.dev).toBe("259:9");
  });

  test("orphaned subsystem is told apart from absent", async () => {
    const root = tmp();
    makeFakeSysfs(root, [{ nqn: PVC }]);
    orphan(root, PVC);
    expect((await lookupNqn(root, PVC)).state).toBe("orphaned");
    expect((await lookupNqn(root, "nqn.2000-02.com.mikrotik:pvc-other")).state).toBe("absent");
    expect(await findNamespaceByNqn(root, PVC)).toBeNull();
  });

  test("empty or missing tree gives nothing", async () => {
    expect(await listSubsystems(join(tmp(), "nope"))).toEqual([]);
  });
});

describe("system volumes", () => {
  const line = (id: number, dev: string, mp: string, src: string) =>
    `${id} 1 ${dev} / ${mp} rw,relatime shared:1 - ext4 ${src} rw`;
  test("a namespace mounted outside the kubelet tree is a system volume; one under it is not", async () => {
    const root = tmp();
    makeFakeSysfs(root, [
      { nqn: ROOT_VOL, namespaces: [{ dev: "259:0" }] },
      { nqn: PVC, namespaces: [{ dev: "259:1" }] },
      { nqn: "nqn.2000-02.com.mikrotik:pvc-idle", namespaces: [{ dev: "259:2" }] },
    ]);
    const mounts = parseMountinfo(
      [
        line(20, "259:0", "/var", "/dev/nvme0n1"),
        line(21, "259:1", "/var/lib/kubelet/plugins/kubernetes.io/csi/rds/abc/globalmount", "/dev/nvme1n1"),
        line(22, "259:1", "/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/pvc/mount", "/dev/nvme1n1"),
      ].join("\n") + "\n",
    );
    const sys = await systemVolumeNqns(root, mounts, { workloadTrees: ["/var/lib/kubelet"] });
    expect([...sys]).toEqual([ROOT_VOL]);
  });

  test("a partition of a namespace mounted at / protects the subsystem", async () => {
    const root = tmp();
    makeFakeSysfs(root, [{ nqn: ROOT_VOL, namespaces: [{ dev: "259:0" }] }]);
    const { mkdirSync, writeFileSync } = await import("node:fs");
    mkdirSync(join(root, "block", "nvme0n1", "nvme0n1p2"), { recursive: true });
    writeFileSync(join(root, "block", "nvme0n1", "nvme0n1p2", "dev"), "259:5\n");
    const mounts = parseMountinfo(line(20, "259:5", "/", "/dev/nvme0n1p2") + "\n");
    expect([...(await systemVolumeNqns(root, mounts, { workloadTrees: ["/var/lib/kubelet"] }))]).toEqual([ROOT_VOL]);
  });

  test("LVM on dm-crypt on a partition, mounted at /, protects the subsystem; the same stack under the kubelet tree does not", async () => {
    const { mkdirSync, writeFileSync } = await import("node:fs");
    const stack = (root: string) => {
      mkdirSync(join(root, "block", "nvme0n1", "nvme0n1p2", "holders", "dm-0"), { recursive: true });
      writeFileSync(join(root, "block", "nvme0n1", "nvme0n1p2", "dev"), "259:5\n");
      for (const [name, dev, holder] of [
        ["dm-0", "253:0", "dm-1"],
        ["dm-1", "253:1", undefined],
      ] as const) {
        mkdirSync(join(root, "block", name, "holders", ...(holder ? [holder] : [])), { recursive: true });
        writeFileSync(join(root, "block", name, "dev"), `${dev}\n`);
      }
    };
    const root = tmp();
    makeFakeSysfs(root, [
      { nqn: ROOT_VOL, namespaces: [{ dev: "259:0" }] },
      { nqn: PVC, namespaces: [{ dev: "259:1" }] },
    ]);
    stack(root);
    const atRoot = parseMountinfo(line(20, "253:1", "/", "/dev/mapper/vg-root") + "\n");
    expect([...(await systemVolumeNqns(root, atRoot, { workloadTrees: ["/var/lib/kubelet"] }))]).toEqual([ROOT_VOL]);
    const inKubelet = parseMountinfo(line(20, "253:1", "/var/lib/kubelet/pods/p/volumes/x/mount", "/dev/dm-1") + "\n");
    expect([...(await systemVolumeNqns(root, inKubelet, { workloadTrees: ["/var/lib/kubelet"] }))]).toEqual([]);
  });
});
