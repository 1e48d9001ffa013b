/**
 * Which check answers first, per Node RPC. The CSI spec's error tables with csi-sanity's cases:
 * a missing required field is INVALID_ARGUMENT for every RPC, before anything is looked up; for the
 * RPCs with a "volume does not exist" row (NodeGetVolumeStats, NodeExpandVolume) an unknown volume
 * is NOT_FOUND whatever its path looks like (csi-sanity asks with "some/path"); for a known volume
 * a malformed path is INVALID_ARGUMENT and a path that is not the volume's NOT_FOUND. Unstage and
 * Unpublish of an unknown volume are OK (idempotent); Publish of one not staged FAILED_PRECONDITION.
 * Every row is asserted through the real node process.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { Code, GiB, mountCap, outcome, startCluster, volName, type Cluster } from "./harness.ts";

setDefaultTimeout(180_000);
let c: Cluster;
beforeAll(async () => {
  c = await startCluster("order");
});
afterAll(async () => {
  await c?.cleanup();
});

const UNKNOWN = "pvc-99999999-2222-4333-8444-5555555555aa";
const { INVALID_ARGUMENT: IA, NOT_FOUND: NF, OK, FAILED_PRECONDITION: FP } = Code;

test("every Node RPC: missing field, then unknown volume, then the path's form, then the path's owner", async () => {
  const name = volName("order");
  const cap = mountCap();
  const v = (
    await c.ctl.controller.CreateVolume({ name, capacity_range: { required_bytes: GiB }, volume_capabilities: [cap] })
  ).volume;
  await c.ctl.controller.ControllerPublishVolume({
    volume_id: v.volume_id,
    node_id: c.nodeId,
    volume_capability: cap,
    readonly: false,
  });
  const staging = c.staging(name);
  const target = c.target(name);
  await c.node.node.NodeStageVolume({
    volume_id: v.volume_id,
    staging_target_path: staging,
    volume_capability: cap,
    volume_context: v.volume_context,
  });
  await c.node.node.NodePublishVolume({
    volume_id: v.volume_id,
    staging_target_path: staging,
    target_path: target,
    volume_capability: cap,
    volume_context: v.volume_context,
  });
  const known = v.volume_id;
  const elsewhere = join(c.dir, "kubelet", "pods", "other", "volumes", "x");
  const range = { required_bytes: GiB };
  const n = c.node.node;
  const rows: [string, () => Promise<unknown>, number][] = [
    // missing volume_id: first, for every RPC
    ["Stage: no volume_id", () => n.NodeStageVolume({ staging_target_path: staging, volume_capability: cap }), IA],
    ["Unstage: no volume_id", () => n.NodeUnstageVolume({ staging_target_path: staging }), IA],
    [
      "Publish: no volume_id",
      () => n.NodePublishVolume({ staging_target_path: staging, target_path: target, volume_capability: cap }),
      IA,
    ],
    ["Unpublish: no volume_id", () => n.NodeUnpublishVolume({ target_path: target }), IA],
    ["Stats: no volume_id", () => n.NodeGetVolumeStats({ volume_path: target }), IA],
    ["Expand: no volume_id", () => n.NodeExpandVolume({ volume_path: target, capacity_range: range }), IA],
    // unknown volume, missing path: still the missing field
    ["Stage: unknown, no staging path", () => n.NodeStageVolume({ volume_id: UNKNOWN, volume_capability: cap }), IA],
    ["Unstage: unknown, no staging path", () => n.NodeUnstageVolume({ volume_id: UNKNOWN }), IA],
    [
      "Publish: unknown, no target",
      () => n.NodePublishVolume({ volume_id: UNKNOWN, staging_target_path: staging, volume_capability: cap }),
      IA,
    ],
    ["Unpublish: unknown, no target", () => n.NodeUnpublishVolume({ volume_id: UNKNOWN }), IA],
    ["Stats: unknown, no path", () => n.NodeGetVolumeStats({ volume_id: UNKNOWN }), IA],
    ["Expand: unknown, no path", () => n.NodeExpandVolume({ volume_id: UNKNOWN, capacity_range: range }), IA],
    [
      "Stage: unknown, no capability",
      () => n.NodeStageVolume({ volume_id: UNKNOWN, staging_target_path: staging }),
      IA,
    ],
    // unknown volume, relative path: NOT_FOUND only where the spec has a "does not exist" row
    [
      "Stage: unknown, relative path",
      () => n.NodeStageVolume({ volume_id: UNKNOWN, staging_target_path: "some/path", volume_capability: cap }),
      IA,
    ],
    [
      "Unstage: unknown, relative path",
      () => n.NodeUnstageVolume({ volume_id: UNKNOWN, staging_target_path: "some/path" }),
      IA,
    ],
    [
      "Publish: unknown, relative target",
      () =>
        n.NodePublishVolume({
          volume_id: UNKNOWN,
          staging_target_path: staging,
          target_path: "some/path",
          volume_capability: cap,
        }),
      IA,
    ],
    [
      "Unpublish: unknown, relative target",
      () => n.NodeUnpublishVolume({ volume_id: UNKNOWN, target_path: "some/path" }),
      IA,
    ],
    ["Stats: unknown, relative path", () => n.NodeGetVolumeStats({ volume_id: UNKNOWN, volume_path: "some/path" }), NF],
    [
      "Expand: unknown, relative path",
      () => n.NodeExpandVolume({ volume_id: UNKNOWN, volume_path: "some/path", capacity_range: range }),
      NF,
    ],
    // unknown volume, well-formed path
    [
      "Unstage: unknown, valid path",
      () => n.NodeUnstageVolume({ volume_id: UNKNOWN, staging_target_path: c.staging(volName("never")) }),
      OK,
    ],
    [
      "Publish: unknown (not staged)",
      () =>
        n.NodePublishVolume({
          volume_id: UNKNOWN,
          staging_target_path: c.staging(volName("never2")),
          target_path: c.target(volName("never2")),
          volume_capability: cap,
        }),
      FP,
    ],
    [
      "Unpublish: unknown, valid path",
      () => n.NodeUnpublishVolume({ volume_id: UNKNOWN, target_path: c.target(volName("never3")) }),
      OK,
    ],
    ["Stats: unknown, valid path", () => n.NodeGetVolumeStats({ volume_id: UNKNOWN, volume_path: target }), NF],
    [
      "Expand: unknown, valid path",
      () => n.NodeExpandVolume({ volume_id: UNKNOWN, volume_path: target, capacity_range: range }),
      NF,
    ],
    // known volume: the path's form, then whether it is the volume's
    ["Stats: known, relative path", () => n.NodeGetVolumeStats({ volume_id: known, volume_path: "some/path" }), IA],
    [
      "Expand: known, relative path",
      () => n.NodeExpandVolume({ volume_id: known, volume_path: "some/path", capacity_range: range }),
      IA,
    ],
    ["Stats: known, not its path", () => n.NodeGetVolumeStats({ volume_id: known, volume_path: elsewhere }), NF],
    [
      "Expand: known, not its path",
      () => n.NodeExpandVolume({ volume_id: known, volume_path: elsewhere, capacity_range: range }),
      NF,
    ],
    ["Stats: known, its target", () => n.NodeGetVolumeStats({ volume_id: known, volume_path: target }), OK],
  ];
  const got: string[] = [];
  const want: string[] = [];
  for (const [what, call, code] of rows) {
    const r = await outcome(call() as Promise<unknown>);
    got.push(
      `${what}: ${r.code}${r.code === IA && !/volume_id|path|volume_capability/.test(r.details) ? " (field not named)" : ""}`,
    );
    want.push(`${what}: ${code}`);
  }
  expect(got).toEqual(want);
  await n.NodeUnpublishVolume({ volume_id: known, target_path: target });
  await n.NodeUnstageVolume({ volume_id: known, staging_target_path: staging });
});
