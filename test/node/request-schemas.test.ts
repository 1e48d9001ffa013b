/**
 * Every refusal of the Node RPCs' request schemas names its field, checked field by field in the
 * order the RPC used to check them by hand (the first problem wins). Pure: no root, no devices.
 */
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { IdSchema, Message, RequiredString } from "../../src/csi/requests.ts";
import { parseRequest } from "../../src/csi/validate.ts";
import { kubeletPaths } from "../../src/node/kubelet-paths.ts";
import { nodeRequestSchemas } from "../../src/node/requests.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { silentLogger } from "../../src/runtime/log.ts";

const K = "/var/lib/kubelet";
const schemas = nodeRequestSchemas({
  paths: kubeletPaths({ kubeletDir: K, runner: createRunner(), log: silentLogger(), timeoutMs: 1_000 }),
  fileDir: "/var/lib/rds-csi/disks",
});
const staging = `${K}/plugins/kubernetes.io/csi/rds/abc/globalmount`;
const target = `${K}/pods/uid/volumes/kubernetes.io~csi/pvc-1/mount`;
const mount = {
  access_type: "mount",
  mount: { fs_type: "ext4", mount_flags: [] },
  access_mode: { mode: "SINGLE_NODE_WRITER" },
};
const context = { nqn: "nqn.2000-02.com.mikrotik:pvc-1", nvmeAddress: "10.0.0.5" };

/** "ok", or the field an INVALID_ARGUMENT names. */
function outcome(schema: v.GenericSchema, req: unknown): string {
  try {
    parseRequest(schema, req);
    return "ok";
  } catch (e) {
    const err = e as { kind?: string; field?: string };
    return err.kind === "invalid-argument" ? (err.field ?? "(no field)") : String(e);
  }
}

describe("shared fields", () => {
  test.each([
    ["a string", "pvc-1", "ok"],
    ["empty", "", "id"],
    ["absent", undefined, "id"],
    ["a number", 7, "id"],
    ["with NUL", "pvc\0x", "id"],
    ["257 characters", "v".repeat(257), "id"],
  ])("IdSchema: %s", (_, id, want) => expect(outcome(v.object({ id: IdSchema }), { id })).toBe(want));

  test("the message says what is wrong after the field", () => {
    expect(() => parseRequest(Message({ volume_id: RequiredString }), {})).toThrow("volume_id: is required");
  });
});

describe("NodeStageVolume", () => {
  const ok = { volume_id: "pvc-1", staging_target_path: staging, volume_capability: mount, volume_context: context };
  test.each([
    ["complete", ok, "ok"],
    ["no volume_id", { ...ok, volume_id: "" }, "volume_id"],
    ["no staging_target_path", { ...ok, staging_target_path: undefined }, "staging_target_path"],
    ["a relative staging_target_path", { ...ok, staging_target_path: "plugins/x" }, "staging_target_path"],
    ["a staging_target_path outside the kubelet dir", { ...ok, staging_target_path: "/etc/x" }, "staging_target_path"],
    ["no volume_capability", { ...ok, volume_capability: null }, "volume_capability"],
    [
      "neither mount nor block",
      { ...ok, volume_capability: { access_mode: { mode: "SINGLE_NODE_WRITER" } } },
      "volume_capability.access_type",
    ],
    [
      "no access mode",
      { ...ok, volume_capability: { ...mount, access_mode: undefined } },
      "volume_capability.access_mode",
    ],
    [
      "an unknown access mode",
      { ...ok, volume_capability: { ...mount, access_mode: { mode: "EVERYONE" } } },
      "volume_capability.access_mode.mode",
    ],
    [
      "a multi-node writer filesystem",
      { ...ok, volume_capability: { ...mount, access_mode: { mode: "MULTI_NODE_MULTI_WRITER" } } },
      "volume_capability.access_mode.mode",
    ],
    [
      "btrfs",
      { ...ok, volume_capability: { ...mount, mount: { fs_type: "btrfs" } } },
      "volume_capability.mount.fs_type",
    ],
    [
      "mount_flags not a list",
      { ...ok, volume_capability: { ...mount, mount: { mount_flags: "noatime" } } },
      "volume_capability.mount.mount_flags",
    ],
    ["a smuggled option", { ...ok, volume_capability: { ...mount, mount: { mount_flags: ["noatime,exec"] } } }, "ok"],
    [
      "an unsafe flag",
      { ...ok, volume_capability: { ...mount, mount: { mount_flags: ["x-gvfs=`id`"] } } },
      "volume_capability.mount.mount_flags",
    ],
    ["volume_context without an nqn", { ...ok, volume_context: { nvmeAddress: "10.0.0.5" } }, "volume_context.nqn"],
    ["volume_context with a number", { ...ok, volume_context: { nqn: 5 } }, "volume_context.nqn"],
    // The first problem wins, in the order the RPC checks its fields.
    ["no volume_id and no path", { ...ok, volume_id: "", staging_target_path: "x" }, "volume_id"],
    [
      "a bad path and no capability",
      { ...ok, staging_target_path: "x", volume_capability: null },
      "staging_target_path",
    ],
  ])("%s → %s", (_, req, want) => expect(outcome(schemas.NodeStageVolume, req)).toBe(want));

  test("the parsed request carries what the RPC acts on", () => {
    const r = parseRequest(schemas.NodeStageVolume, {
      ...ok,
      staging_target_path: `${staging}/`,
      volume_capability: { ...mount, mount: { fs_type: "", mount_flags: ["noatime,nodiratime"] } },
    });
    expect(r).toMatchObject({
      volumeId: "pvc-1",
      stagingPath: staging,
      cap: {
        accessType: "mount",
        accessMode: "SINGLE_NODE_WRITER",
        fsType: "ext4",
        mountFlags: ["noatime", "nodiratime"],
      },
      target: { transport: "nvme-tcp", nqn: context.nqn, address: "10.0.0.5", port: 4420 },
    });
  });
});

describe("NodeUnstageVolume", () => {
  test.each([
    ["complete", { volume_id: "pvc-1", staging_target_path: staging }, "ok"],
    ["no volume_id", { staging_target_path: staging }, "volume_id"],
    ["no staging_target_path", { volume_id: "pvc-1" }, "staging_target_path"],
    ["a dotted staging_target_path", { volume_id: "pvc-1", staging_target_path: `${K}/../x` }, "staging_target_path"],
  ])("%s → %s", (_, req, want) => expect(outcome(schemas.NodeUnstageVolume, req)).toBe(want));
});

describe("NodePublishVolume", () => {
  const ok = { volume_id: "pvc-1", staging_target_path: staging, target_path: target, volume_capability: mount };
  test.each([
    ["complete", ok, "ok"],
    ["no volume_id", { ...ok, volume_id: undefined }, "volume_id"],
    ["no staging_target_path", { ...ok, staging_target_path: "" }, "staging_target_path"],
    ["no target_path", { ...ok, target_path: "" }, "target_path"],
    ["a target_path with a control character", { ...ok, target_path: `${K}/pods/a\nb` }, "target_path"],
    ["target_path equal to staging_target_path", { ...ok, target_path: staging }, "target_path"],
    ["no volume_capability", { ...ok, volume_capability: undefined }, "volume_capability"],
    ["readonly not a boolean", { ...ok, readonly: "yes" }, "readonly"],
    [
      "a block capability",
      {
        ...ok,
        volume_capability: { access_type: "block", block: {}, access_mode: { mode: "MULTI_NODE_MULTI_WRITER" } },
      },
      "ok",
    ],
  ])("%s → %s", (_, req, want) => expect(outcome(schemas.NodePublishVolume, req)).toBe(want));

  test("readonly defaults to false", () => {
    expect(parseRequest(schemas.NodePublishVolume, ok).readonly).toBe(false);
  });
});

describe("NodeUnpublishVolume", () => {
  test.each([
    ["complete", { volume_id: "pvc-1", target_path: target }, "ok"],
    ["no volume_id", { target_path: target }, "volume_id"],
    ["no target_path", { volume_id: "pvc-1" }, "target_path"],
    ["the kubelet dir itself", { volume_id: "pvc-1", target_path: K }, "target_path"],
  ])("%s → %s", (_, req, want) => expect(outcome(schemas.NodeUnpublishVolume, req)).toBe(want));
});

describe("NodeExpandVolume / NodeGetVolumeStats", () => {
  test.each([
    ["complete", { volume_id: "pvc-1", volume_path: staging, capacity_range: { required_bytes: 1 } }, "ok"],
    ["no capacity_range", { volume_id: "pvc-1", volume_path: staging }, "ok"],
    ["no volume_id", { volume_path: staging }, "volume_id"],
    [
      "a negative required_bytes",
      { volume_id: "pvc-1", capacity_range: { required_bytes: -1 } },
      "capacity_range.required_bytes",
    ],
    [
      "a limit_bytes string",
      { volume_id: "pvc-1", volume_path: staging, capacity_range: { limit_bytes: "x" } },
      "capacity_range.limit_bytes",
    ],
    ["no volume_path", { volume_id: "pvc-1" }, "volume_path"],
    // The form of volume_path is checked after the volume is known (NOT_FOUND first, as csi-sanity expects).
    ["a relative volume_path", { volume_id: "pvc-1", volume_path: "x" }, "ok"],
  ])("expand: %s → %s", (_, req, want) => expect(outcome(schemas.NodeExpandVolume, req)).toBe(want));

  test.each([
    ["complete", { volume_id: "pvc-1", volume_path: target }, "ok"],
    ["no volume_id", { volume_path: target }, "volume_id"],
    ["no volume_path", { volume_id: "pvc-1" }, "volume_path"],
    ["a NUL in volume_path", { volume_id: "pvc-1", volume_path: "/a\0b" }, "volume_path"],
  ])("stats: %s → %s", (_, req, want) => expect(outcome(schemas.NodeGetVolumeStats, req)).toBe(want));
});
