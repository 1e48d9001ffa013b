import { hostname } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { nqnPolicyProblem, type NqnPolicy } from "../config/nqn.ts";
import { AbsolutePath, DurationMs, NonNegativeInt, PositiveInt } from "../config/schemas.ts";
import { identityHandlers } from "../csi/identity.ts";
import { startCsiServer, type RpcHandler } from "../csi/server.ts";
import { readMountinfo } from "../mount/mountinfo.ts";
import { createProbeRegistry } from "../mount/probe.ts";
import { DEFAULT_STORM_THRESHOLD, DEFAULT_STORM_TOTAL } from "../mount/storm-guard.ts";
import { createLoopConnector } from "../node/loop-connector.ts";
import { createNodeService, DEFAULT_NODE_TIMEOUTS } from "../node/service.ts";
import { kubeletPaths } from "../node/kubelet-paths.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { HOST_NQN_FILE_OPTION, NVME_COMMAND_OPTION } from "../config/options.ts";
import { daemonDirsProblem } from "../runtime/daemon-dirs.ts";
import { isVolumeId, nqnForVolume } from "../backends/ids.ts";

import { stagingRecords } from "../node/staging-records.ts";
import { readHostNqn } from "../nvme/host-nqn.ts";
import { createNvmeTcpConnector } from "../nvme/nvme-tcp-connector.ts";
import { nativeMultipath } from "../nvme/sysfs.ts";
import { systemVolumeNqns } from "../nvme/system-volumes.ts";
import { errorMessage } from "../runtime/errors.ts";
import { missingTools } from "../runtime/tools-on-path.ts";
import { createKeyLock } from "../runtime/key-lock.ts";
import { acquireLock, isLockHeld } from "../runtime/lockfile.ts";
import { profiled, profileFields, profilingRunner } from "../runtime/rpc-profile.ts";
import { runDaemon } from "./daemon.ts";
import type { ConfigOf, OptionSpec } from "../config/option-spec.ts";
import type { COMMON_OPTIONS } from "../config/options.ts";
import type { Mode, ModeContext } from "./types.ts";
import { startNodeKube, NODE_KUBE_OPTIONS } from "../k8s/node-wiring.ts";
import { kubeClientFor } from "../k8s/mode-options.ts";

/**
 * Everything the node path runs (directly or, for `sh`, to batch mount probes); a node without one
 * of them cannot serve every volume. The NixOS module's unit PATH is tested against this list.
 */
export const REQUIRED_TOOLS = [
  "sh",
  "cat",
  "blkid",
  "mkfs.ext4",
  "mkfs.xfs",
  "fsck.ext4",
  "xfs_repair",
  "resize2fs",
  "dumpe2fs",
  "xfs_growfs",
  "mount",
  "umount",
  "mknod",
  "losetup",
  "blockdev",
  "cmp",
  "stat",
  "realpath",
  "mkdir",
  "rmdir",
  "rm",
];

const OPTIONS = [
  {
    name: "max-volumes",
    type: "number",
    describe: "max_volumes_per_node reported to the CO (0 = no limit)",
    default: 0,
    schema: NonNegativeInt,
  },
  {
    name: "storm-threshold",
    type: "number",
    describe: "Refuse a mount when its source or target already has this many entries",
    default: DEFAULT_STORM_THRESHOLD,
    schema: PositiveInt,
  },
  {
    name: "storm-total",
    type: "number",
    describe: "Refuse all mount work while the mount table has this many entries",
    default: DEFAULT_STORM_TOTAL,
    schema: PositiveInt,
  },
  {
    name: "probe-timeout",
    type: "string",
    describe: "Deadline of a volume stats probe",
    default: "5s",
    schema: DurationMs,
  },
  {
    name: "health-check-timeout",
    type: "string",
    describe: "Deadline of the read-only filesystem check before a first mount",
    default: "2m",
    schema: DurationMs,
  },
  {
    name: "mountinfo-timeout",
    type: "string",
    describe: "Deadline for reading the mount table",
    default: "10s",
    schema: DurationMs,
  },
  { name: "mkfs-timeout", type: "string", describe: "Deadline of mkfs", default: "5m", schema: DurationMs },
  {
    name: "mount-timeout",
    type: "string",
    describe: "Deadline of one mount or umount",
    default: "1m",
    schema: DurationMs,
  },
  {
    name: "connect-timeout",
    type: "string",
    describe: "Deadline of one nvme connect or disconnect",
    default: "30s",
    schema: DurationMs,
  },
  {
    name: "device-timeout",
    type: "string",
    describe: "How long the block device may take to appear after nvme connect",
    default: "15s",
    schema: DurationMs,
  },
  HOST_NQN_FILE_OPTION,
  NVME_COMMAND_OPTION,
  {
    name: "admin-socket",
    type: "string",
    describe: "Admin socket (breaker list/reset); default <state-dir>/admin.sock",
    schema: AbsolutePath,
  },
  {
    name: "file-dir",
    type: "string",
    describe: "Directory of the controller's file backend: loop volumes' backing files must be in it",
    default: DEFAULTS.fileDir,
    schema: AbsolutePath,
  },
  ...NODE_KUBE_OPTIONS,
] as const satisfies readonly OptionSpec[];

type NodeConfig = ConfigOf<[...typeof COMMON_OPTIONS, ...typeof OPTIONS], "nqn-prefix">;

export const mode: Mode<NodeConfig> = {
  command: "csi-node",
  servesMetrics: true,
  // No default: a guessed prefix is how the Go driver disconnected a node's own system volume.
  required: ["nqn-prefix"],
  describe: "CSI Identity + Node: NVMe/TCP (or loop) attach, check/mkfs/mount, publish on this node",
  options: OPTIONS,
  async run(ctx) {
    const c = ctx.config;
    // The prefix first: nothing is scanned, locked or served before it is known to be safe.
    const prefix = c.nqnPrefix;
    const policy: NqnPolicy = { prefix, protectedPatterns: c.protectedNqn };
    const problem = nqnPolicyProblem(policy);
    if (problem) {
      process.stderr.write(`rds-csi csi-node: ${problem}\n`);
      return 2;
    }
    const stateDir = c.stateDir;
    const unsafe = daemonDirsProblem(c);
    if (unsafe) {
      ctx.log.fatal(`csi-node: ${unsafe}`);
      return 2;
    }
    // Absent is allowed (node_id is then the bare name); something that is not an NQN is refused.
    const host = await readHostNqn(ctx.runner, c.hostNqnFile, { log: ctx.log });
    if (host.state === "invalid") {
      process.stderr.write(`rds-csi csi-node: ${host.message}\n`);
      return 2;
    }
    if (host.state !== "found")
      ctx.log.warn(
        { file: c.hostNqnFile, reason: host.message },
        "no host NQN; node_id will not carry one and exports cannot be restricted to this host",
      );
    const hostNqn = host.state === "found" ? host.nqn : undefined;
    const kube = await kubeClientFor(c, ctx.log).catch((e: Error) => e);
    if (kube instanceof Error) {
      ctx.log.fatal(`csi-node: ${kube.message}`);
      return 2;
    }
    let lock: ReturnType<typeof acquireLock>;
    try {
      lock = acquireLock(join(stateDir, "csi-node.lock"), { command: "csi-node" });
    } catch (e) {
      ctx.log.fatal(
        { err: errorMessage(e) },
        isLockHeld(e) ? "csi-node: another csi-node holds the node lock" : "csi-node: cannot take the node lock",
      );
      return 1;
    }
    ctx.shutdown.onClose(() => lock.release());

    const nvmeBin = c.nvmeCommand;
    const missing = missingTools([nvmeBin, ...REQUIRED_TOOLS]);
    if (missing.length) ctx.log.error({ missing }, "required tools are missing; Probe reports not ready");
    const sysfsRoot = c.sysfsRoot;
    const multipath = await nativeMultipath(sysfsRoot).catch(() => undefined);
    if (multipath !== true)
      ctx.log.warn(
        { multipath: multipath ?? "unknown" },
        "nvme_core native multipath is off: controller renumbering on reconnect is more likely (set nvme_core.multipath=Y)",
      );

    const procRoot = c.procRoot;
    const mountinfoMs = c.mountinfoTimeout;
    const kubeletDir = c.kubeletDir;
    // Child processes and mount-table reads are counted per RPC and logged at debug level.
    const runner = profilingRunner(ctx.runner);
    const systemNqns = async (signal?: AbortSignal) => {
      const mounts = await readMountinfo({ runner, procRoot, timeoutMs: mountinfoMs, ...(signal ? { signal } : {}) });
      return systemVolumeNqns(sysfsRoot, mounts, { workloadTrees: [kubeletDir], signal });
    };
    const probes = createProbeRegistry({ timeoutMs: c.probeTimeout, log: ctx.log });
    ctx.shutdown.onClose(() => probes.close());
    const nodeName = c.nodeId ?? hostname();
    const records = stagingRecords(stateDir);
    const stale = await records.removeTempFiles().catch(() => []);
    if (stale.length) ctx.log.info({ removed: stale }, "removed temp files of staging records a crash interrupted");
    const service = createNodeService({
      runner,
      log: ctx.log,
      nodeName,
      ...(hostNqn ? { hostNqn } : {}),
      maxVolumes: c.maxVolumes,
      connectors: {
        "nvme-tcp": createNvmeTcpConnector({
          runner,
          log: ctx.log,
          sysfsRoot,
          devRoot: c.devRoot,
          policy,
          systemNqns,
          nvmeBin,
          ...(hostNqn ? { hostNqn } : {}),
          timeouts: { connectMs: c.connectTimeout, disconnectMs: c.connectTimeout, deviceSettleMs: c.deviceTimeout },
        }),
        loop: createLoopConnector({ runner, log: ctx.log }),
      },
      records,
      paths: kubeletPaths({ kubeletDir, runner, log: ctx.log, timeoutMs: DEFAULT_NODE_TIMEOUTS.commandMs }),
      fileDir: c.fileDir,
      legacyNqnFor: (id) => (isVolumeId(id) ? nqnForVolume(prefix, id) : undefined),
      breakers: ctx.breakers,
      locks: createKeyLock(),
      probes,
      procRoot,
      stormThreshold: c.stormThreshold,
      stormTotal: c.stormTotal,
      timeouts: {
        mountinfoMs,
        healthCheckMs: c.healthCheckTimeout,
        mkfsMs: c.mkfsTimeout,
        mountMs: c.mountTimeout,
        probeMs: c.probeTimeout,
      },
    });
    const ready = missing.length === 0;
    const server = await startCsiServer({
      endpoint: c.endpoint,
      socketMode: c.socketMode,
      allowSharedSocketDir: c.allowSharedSocketDir,
      handlers: {
        Identity: identityHandlers({
          driverName: c.driverName,
          version: ctx.version,
          pluginCapabilities: [],
          probe: async () =>
            ready ? { ready: true } : { ready: false, reason: `missing tools: ${missing.join(", ")}` },
        }),
        Node: Object.fromEntries(
          Object.entries(startNodeKube(ctx, kube, service, nodeName)).map(([method, handler]): [string, RpcHandler] => [
            method,
            (req, rpc) =>
              profiled(
                () => handler(req, rpc),
                (p) => ctx.log.debug({ op: method, ...profileFields(p) }, "rpc profile"),
              ),
          ]),
        ),
      },
      shutdown: ctx.shutdown,
      log: ctx.log,
      metrics: ctx.metrics,
    });
    ctx.shutdown.onClose(() => server.close());
    ctx.log.info(
      { address: server.address, node_id: nodeName, nqn_prefix: prefix, protected: policy.protectedPatterns },
      "csi-node ready",
    );
    return runDaemon(ctx, { adminSocket: c.adminSocket ?? join(stateDir, "admin.sock") });
  },
};
