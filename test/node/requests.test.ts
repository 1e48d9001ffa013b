import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { NodeCapabilitySchema } from "../../src/csi/requests.ts";
import { parseRequest } from "../../src/csi/validate.ts";
import { parseVolumeContext } from "../../src/node/volume-context.ts";
import { kubeletPaths } from "../../src/node/kubelet-paths.ts";
import { checkRequestBounds } from "../../src/csi/request-bounds.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { silentLogger } from "../../src/runtime/log.ts";

/** The capability as every Node RPC that carries one parses it. */
const parseCapability = (req: unknown) =>
  parseRequest(v.looseObject({ volume_capability: NodeCapabilitySchema }), req).volume_capability;

const fieldOf = (fn: () => unknown) => {
  try {
    fn();
    return "ok";
  } catch (e) {
    return (e as { field?: string }).field ?? String(e);
  }
};
const cap = (over: Record<string, unknown>) => ({
  volume_capability: {
    access_type: "mount",
    mount: { fs_type: "ext4", mount_flags: [] },
    access_mode: { mode: "SINGLE_NODE_WRITER" },
    ...over,
  },
});

describe("parseCapability", () => {
  test.each([
    ["mount ext4", cap({}), "ok"],
    ["no capability", {}, "volume_capability"],
    ["neither mount nor block", cap({ access_type: undefined, mount: undefined }), "volume_capability.access_type"],
    ["unknown access mode", cap({ access_mode: { mode: "EVERYONE" } }), "volume_capability.access_mode.mode"],
    [
      "multi-node writer on a filesystem",
      cap({ access_mode: { mode: "MULTI_NODE_MULTI_WRITER" } }),
      "volume_capability.access_mode.mode",
    ],
    [
      "multi-node writer on a block volume",
      cap({ access_type: "block", mount: undefined, block: {}, access_mode: { mode: "MULTI_NODE_MULTI_WRITER" } }),
      "ok",
    ],
    ["btrfs", cap({ mount: { fs_type: "btrfs" } }), "volume_capability.mount.fs_type"],
    [
      "a mount flag with a comma-smuggled option",
      cap({ mount: { fs_type: "ext4", mount_flags: ["noatime,x-gvfs=`id`"] } }),
      "volume_capability.mount.mount_flags",
    ],
    ["safe mount flags", cap({ mount: { fs_type: "xfs", mount_flags: ["noatime", "nouuid"] } }), "ok"],
  ])("%s → %s", (_, req, want) => expect(fieldOf(() => parseCapability(req))).toBe(want));
});

describe("parseVolumeContext", () => {
  const opts = { fileDir: "/var/lib/rds-csi/disks" };
  test.each([
    [
      "Go driver keys",
      { nqn: "nqn.2000-02.com.mikrotik:pvc-1", nvmeAddress: "10.0.0.5", nvmePort: "4420", ctrlLossTmo: "-1" },
      "ok",
    ],
    ["no nqn", { nvmeAddress: "10.0.0.5" }, "volume_context.nqn"],
    ["bad nqn", { nqn: "bogus", nvmeAddress: "10.0.0.5" }, "volume_context.nqn"],
    [
      "address with a shell character",
      { nqn: "nqn.2000-02.com.mikrotik:pvc-1", nvmeAddress: "10.0.0.5;reboot" },
      "volume_context.nvmeAddress",
    ],
    [
      "port out of range",
      { nqn: "nqn.2000-02.com.mikrotik:pvc-1", nvmeAddress: "h", nvmePort: "70000" },
      "volume_context.nvmePort",
    ],
    ["unknown transport", { transport: "iscsi" }, "volume_context.transport"],
    ["loop without a file", { transport: "loop" }, "volume_context.backingFile"],
    ["loop in the file dir", { transport: "loop", backingFile: "/var/lib/rds-csi/disks/pvc-1.img" }, "ok"],
    ["loop outside the file dir", { transport: "loop", backingFile: "/etc/passwd" }, "volume_context.backingFile"],
    [
      "loop in a subdirectory",
      { transport: "loop", backingFile: "/var/lib/rds-csi/disks/snapshots/snap-1.img" },
      "volume_context.backingFile",
    ],
    [
      "loop climbing out",
      { transport: "loop", backingFile: "/var/lib/rds-csi/disks/../x.img" },
      "volume_context.backingFile",
    ],
    [
      "loop not an .img",
      { transport: "loop", backingFile: "/var/lib/rds-csi/disks/pvc-1.json" },
      "volume_context.backingFile",
    ],
  ])("%s → %s", (_, ctx, want) =>
    expect(fieldOf(() => parseVolumeContext("pvc-1", ctx as Record<string, string>, opts))).toBe(want),
  );
});

describe("kubelet paths, lexical part", () => {
  const paths = kubeletPaths({
    kubeletDir: "/var/lib/kubelet/",
    runner: createRunner(),
    log: silentLogger(),
    timeoutMs: 1_000,
  });
  test.each([
    [
      "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount",
      "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount",
    ],
    ["/var/lib/kubelet/plugins/x/globalmount/", "/var/lib/kubelet/plugins/x/globalmount"],
    ["/var/lib/kubelet", "target_path"],
    ["/var/lib/kubeletX/pods", "target_path"],
    ["/var/lib/kubelet/../kubelet/pods", "target_path"],
    ["/var/lib/kubelet/pods//x", "target_path"],
    ["pods/x", "target_path"],
    [`/var/lib/kubelet/${"a".repeat(256)}`, "target_path"],
    [`/var/lib/kubelet/${"a/".repeat(2100)}`, "target_path"],
  ])("%s → %s", (raw, want) => {
    let got: string;
    try {
      got = paths.lexical("target_path", raw);
    } catch (e) {
      got = (e as { field: string }).field;
    }
    expect(got).toBe(want);
  });
});

describe("request bounds (CSI size limits)", () => {
  test.each([
    ["a 128-byte id", { volume_id: "v".repeat(128) }, "ok"],
    ["a 129-byte id", { volume_id: "v".repeat(129) }, "volume_id"],
    ["a multi-byte id over 128 bytes", { volume_id: "é".repeat(65) }, "volume_id"],
    ["a 256-byte node id", { node_id: "n".repeat(256) }, "ok"],
    ["a 4096-byte path", { target_path: `/${"a/".repeat(2047)}b` }, "ok"],
    ["a path with a 256-byte component", { target_path: `/${"a".repeat(256)}` }, "target_path"],
    ["a 4 KiB map", { volume_context: { k: "v".repeat(4095) } }, "ok"],
    ["a map over 4 KiB", { volume_context: { k: "v".repeat(4096) } }, "volume_context"],
    [
      "100,000 parameters",
      { parameters: Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`p${i}`, ""])) },
      "parameters",
    ],
    [
      "a NUL in a nested string",
      { volume_capability: { mount: { fs_type: "ext4\0" } } },
      "volume_capability.mount.fs_type",
    ],
    [
      "65 mount flags",
      { volume_capability: { mount: { mount_flags: Array(65).fill("ro") } } },
      "volume_capability.mount.mount_flags",
    ],
  ])("%s → %s", (_, req, want) => expect(fieldOf(() => checkRequestBounds(req))).toBe(want));
});
