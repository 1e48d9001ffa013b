#!/usr/bin/env bun
/**
 * Drives dist/rds-csi the way kubelet and the CSI sidecars would, on the local `file` backend:
 * two processes (controller, node), one volume through its whole life, then a SIGTERM drain.
 * The volume is xfs: growing a mounted ext4 needs CAP_SYS_RESOURCE, which containers often lack.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { csiClient } from "../src/csi/client.ts";

const BIN = `${import.meta.dir}/../dist/rds-csi`;
const root = mkdtempSync("/tmp/rds-csi-demo-");
const say = (s: string) => console.log(`\x1b[1m==>\x1b[0m ${s}`);
const GiB = 1024 ** 3;

function start(name: string, args: string[]) {
  const proc = Bun.spawn([BIN, ...args, "--log-format", "pretty", "--log-level", "info"], {
    stdout: "pipe",
    stderr: "inherit",
  });
  // Prefix the daemon's log lines so the two processes can be told apart.
  (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stdout)
      for (const line of dec.decode(chunk).split("\n")) if (line) console.log(`   [${name}] ${line}`);
  })();
  return proc;
}

async function ready(endpoint: string) {
  const c = csiClient(endpoint);
  for (let i = 0; i < 200; i++) {
    try {
      await c.identity.Probe({}, { deadlineMs: 500 });
      return c;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`${endpoint} did not come up`);
}

const ctlSock = `unix://${root}/controller.sock`;
const nodeSock = `unix://${root}/node.sock`;
say(`work dir ${root}`);
const controller = start("controller", [
  "csi-controller",
  "--backend",
  "file",
  "--file-dir",
  `${root}/volumes`,
  "--state-dir",
  `${root}/controller-state`,
  "--endpoint",
  ctlSock,
]);
const node = start("node", [
  "csi-node",
  "--nqn-prefix",
  "nqn.2000-02.com.mikrotik:pvc-",
  "--node-id",
  "demo-node",
  "--state-dir",
  `${root}/node-state`,
  "--kubelet-dir",
  `${root}/kubelet`,
  "--file-dir",
  `${root}/volumes`,
  "--endpoint",
  nodeSock,
]);
let exitCode = 0;
try {
  const ctl = await ready(ctlSock);
  const nd = await ready(nodeSock);
  say(`plugin: ${JSON.stringify(await ctl.identity.GetPluginInfo({}))}`);
  const cap = { mount: { fs_type: "xfs", mount_flags: [] }, access_mode: { mode: "SINGLE_NODE_WRITER" } };

  say("CreateVolume demo-claim, 1 GiB");
  const { volume } = await ctl.controller.CreateVolume({
    name: "demo-claim",
    capacity_range: { required_bytes: GiB },
    volume_capabilities: [cap],
    parameters: {},
  });
  say(
    `  volume ${volume.volume_id}, ${volume.capacity_bytes / GiB} GiB, context ${JSON.stringify(volume.volume_context)}`,
  );

  const info = await nd.node.NodeGetInfo({});
  say(`NodeGetInfo: ${info.node_id}`);
  await ctl.controller.ControllerPublishVolume({
    volume_id: volume.volume_id,
    node_id: info.node_id,
    volume_capability: cap,
    readonly: false,
    volume_context: volume.volume_context,
  });

  const staging = `${root}/kubelet/plugins/kubernetes.io/csi/rds.csi.srvlab.io/demo/globalmount`;
  const target = `${root}/kubelet/pods/demo-pod/volumes/kubernetes.io~csi/demo-claim/mount`;
  say("NodeStageVolume (attach loop device, xfs_repair -n, mkfs.xfs, mount)");
  await nd.node.NodeStageVolume({
    volume_id: volume.volume_id,
    staging_target_path: staging,
    volume_capability: cap,
    volume_context: volume.volume_context,
    publish_context: {},
  });
  say("NodePublishVolume (bind mount into the pod directory)");
  await nd.node.NodePublishVolume({
    volume_id: volume.volume_id,
    staging_target_path: staging,
    target_path: target,
    volume_capability: cap,
    readonly: false,
    volume_context: volume.volume_context,
  });
  await Bun.write(`${target}/hello.txt`, "written through the published volume\n");
  say(`wrote ${target}/hello.txt`);
  const stats = await nd.node.NodeGetVolumeStats({ volume_id: volume.volume_id, volume_path: target });
  say(`NodeGetVolumeStats: ${JSON.stringify(stats.usage)} condition ${JSON.stringify(stats.volume_condition)}`);

  say("ControllerExpandVolume + NodeExpandVolume to 2 GiB");
  const grown = await ctl.controller.ControllerExpandVolume({
    volume_id: volume.volume_id,
    capacity_range: { required_bytes: 2 * GiB },
    volume_capability: cap,
  });
  await nd.node.NodeExpandVolume({
    volume_id: volume.volume_id,
    volume_path: target,
    staging_target_path: staging,
    capacity_range: { required_bytes: 2 * GiB },
    volume_capability: cap,
  });
  const after = await nd.node.NodeGetVolumeStats({ volume_id: volume.volume_id, volume_path: target });
  say(
    `  controller says ${grown.capacity_bytes / GiB} GiB; filesystem now ${(after.usage.find((u: any) => u.unit === "BYTES").total / GiB).toFixed(2)} GiB`,
  );

  say("NodeUnpublishVolume, NodeUnstageVolume, ControllerUnpublishVolume, DeleteVolume");
  await nd.node.NodeUnpublishVolume({ volume_id: volume.volume_id, target_path: target });
  await nd.node.NodeUnstageVolume({ volume_id: volume.volume_id, staging_target_path: staging });
  await ctl.controller.ControllerUnpublishVolume({ volume_id: volume.volume_id, node_id: info.node_id });
  await ctl.controller.DeleteVolume({ volume_id: volume.volume_id });
  const left = await ctl.controller.ListVolumes({});
  say(`volumes left: ${left.entries.length}`);
  ctl.close();
  nd.close();
  say("all steps succeeded");
} catch (e) {
  console.error(`demo failed: ${(e as any).details ?? (e as Error).message}`);
  exitCode = 1;
} finally {
  say("SIGTERM to both daemons (graceful drain)");
  controller.kill("SIGTERM");
  node.kill("SIGTERM");
  const codes = await Promise.all([controller.exited, node.exited]);
  say(`exit codes: controller ${codes[0]}, node ${codes[1]}`);
  if (exitCode === 0) rmSync(root, { recursive: true, force: true });
}
process.exit(exitCode);
