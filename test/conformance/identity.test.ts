import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { Code, outcome, startCluster, type Cluster } from "./harness.ts";

setDefaultTimeout(120_000);
let c: Cluster;
beforeAll(async () => {
  c = await startCluster("identity");
});
afterAll(async () => {
  await c?.cleanup();
});

describe("Identity on both processes", () => {
  test("GetPluginInfo: non-empty name and non-empty version, the same on controller and node", async () => {
    const a = await c.ctl.identity.GetPluginInfo({});
    const b = await c.node.identity.GetPluginInfo({});
    expect(a.name).toBe("rds.csi.srvlab.io");
    expect(a.vendor_version.length).toBeGreaterThan(0);
    expect(b).toEqual(a);
  });

  test("GetPluginCapabilities: the controller advertises CONTROLLER_SERVICE and online expansion; the node does not claim the controller service", async () => {
    const a = JSON.stringify(await c.ctl.identity.GetPluginCapabilities({}));
    expect(a).toContain("CONTROLLER_SERVICE");
    expect(a).toContain("ONLINE");
    expect(JSON.stringify(await c.node.identity.GetPluginCapabilities({}))).not.toContain("CONTROLLER_SERVICE");
  });

  test("Probe: both ready, ×10", async () => {
    for (let i = 0; i < 10; i++) {
      expect(await c.ctl.identity.Probe({})).toEqual({ ready: { value: true } });
      expect(await c.node.identity.Probe({})).toEqual({ ready: { value: true } });
    }
  });

  test("a service the process does not serve → UNIMPLEMENTED (Node RPC on the controller, Controller RPC on the node)", async () => {
    expect((await outcome(c.ctl.node.NodeGetInfo({}))).code).toBe(Code.UNIMPLEMENTED);
    expect((await outcome(c.node.controller.CreateVolume({ name: "x" }))).code).toBe(Code.UNIMPLEMENTED);
  });

  test("ControllerGetCapabilities and NodeGetCapabilities list what the suite relies on", async () => {
    const cc = JSON.stringify(await c.ctl.controller.ControllerGetCapabilities({}));
    for (const cap of [
      "CREATE_DELETE_VOLUME",
      "PUBLISH_UNPUBLISH_VOLUME",
      "LIST_VOLUMES",
      "CREATE_DELETE_SNAPSHOT",
      "LIST_SNAPSHOTS",
      "EXPAND_VOLUME",
      "CLONE_VOLUME",
      "SINGLE_NODE_MULTI_WRITER",
    ]) {
      expect(cc).toContain(`"${cap}"`);
    }
    const nc = JSON.stringify(await c.node.node.NodeGetCapabilities({}));
    for (const cap of ["STAGE_UNSTAGE_VOLUME", "EXPAND_VOLUME", "GET_VOLUME_STATS", "SINGLE_NODE_MULTI_WRITER"])
      expect(nc).toContain(`"${cap}"`);
  });

  test("NodeGetInfo: node_id carries the node name and host NQN; topology names the node", async () => {
    const info = await c.node.node.NodeGetInfo({});
    expect(info.node_id).toBe(c.nodeId);
    expect(info.node_id.startsWith("conf-node/nqn.")).toBe(true);
    expect(info.accessible_topology.segments["topology.rds.csi.srvlab.io/node"]).toBe("conf-node");
  });
});
