/**
 * The VM suite's cluster: the RouterOS simulator in real-export mode (nvmet through configfs on
 * 127.0.0.1), the compiled `dist/rds-csi` as csi-controller (--backend routeros against the
 * simulator) and csi-node, driven over real gRPC. Runs only inside the VM (scripts/vm/run), where
 * the kernel has nvmet, nvme-tcp and a configfs of its own; on the host it refuses with a clear error.
 */
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { csiClient, type CsiClient } from "../../src/csi/client.ts";
import { lookupNqn, type NqnLookup } from "../../src/nvme/sysfs.ts";
import { createRealExport, type RealExport } from "../sim/real-export.ts";
import { startRouterOsSim, type RouterOsSim } from "../sim/routeros-sim.ts";

export const REPO = join(import.meta.dir, "..", "..");
export const BIN = join(REPO, "dist", "rds-csi");
export const NQN_PREFIX = "nqn.2000-02.com.mikrotik:pvc-";
export const HOST_NQN = "nqn.2014-08.org.nvmexpress:uuid:0c0c0c0c-0000-4000-8000-0000000000f1";
export const DRIVER = "rds.csi.srvlab.io";
export const MiB = 2 ** 20;
export const GiB = 2 ** 30;
export const NVME_PORT = 4420;
const RESULTS = "/tmp/vm-out";

/** Fails loudly outside the VM: these tests need the VM's kernel (nvmet, nvme-tcp). */
export function requireVm() {
  if (process.env.RDS_CSI_VM !== "1")
    throw new Error("test/vm runs inside the NVMe/TCP VM: scripts/vm/run -- bun test test/vm/");
  for (const m of ["nvmet_tcp", "nvme_tcp"]) {
    if (!existsSync(`/sys/module/${m}`)) throw new Error(`kernel module ${m} is not loaded in this VM`);
  }
}

export interface Outcome<T = any> {
  code: number;
  details: string;
  value?: T;
  ms: number;
}

/**
 * Runs one RPC, logging its duration (the figures the closing note asks for) to the console and to
 * the results share, and returns its status instead of throwing.
 */
export async function rpc<T = any>(scenario: string, name: string, p: Promise<T>): Promise<Outcome<T>> {
  const t0 = performance.now();
  let out: Outcome<T>;
  try {
    out = { code: 0, details: "", value: await p, ms: 0 };
  } catch (e) {
    const err = e as { code?: number; details?: string; message?: string };
    out = {
      code: typeof err.code === "number" ? err.code : -1,
      details: err.details ?? err.message ?? String(e),
      ms: 0,
    };
  }
  out.ms = Math.round(performance.now() - t0);
  console.log(
    `[rpc] ${scenario} ${name} ${out.ms} ms code=${out.code}${out.details ? ` ${out.details.slice(0, 200)}` : ""}`,
  );
  if (existsSync(RESULTS))
    appendFileSync(
      join(RESULTS, "rpc.jsonl"),
      `${JSON.stringify({ scenario, rpc: name, ms: out.ms, code: out.code })}\n`,
    );
  return out;
}

/** Throws with the RPC's status when it did not succeed. */
export function okValue<T>(o: Outcome<T>): T {
  if (o.code !== 0) throw new Error(`RPC failed: code ${o.code}: ${o.details}`);
  return o.value as T;
}

export const Code = {
  OK: 0,
  NOT_FOUND: 5,
  FAILED_PRECONDITION: 9,
  OUT_OF_RANGE: 11,
  UNAVAILABLE: 14,
  DEADLINE_EXCEEDED: 4,
} as const;

export const mountCap = (fs_type = "ext4") => ({
  mount: { fs_type, mount_flags: [] },
  access_mode: { mode: "SINGLE_NODE_WRITER" },
});

export function sh(cmd: string[], opts: { timeoutMs?: number; allowFail?: boolean } = {}) {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", timeout: opts.timeoutMs ?? 60_000 });
  const out = { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  if (!opts.allowFail && out.code !== 0)
    throw new Error(`${cmd.join(" ")} exited ${out.code}: ${out.stderr.trim() || out.stdout.trim()}`);
  return out;
}

export const lookup = (nqn: string): Promise<NqnLookup> => lookupNqn("/sys", nqn, { timeoutMs: 5_000 });

/** Controller states of an NQN, e.g. ["nvme0:live"]. */
export async function controllerStates(nqn: string): Promise<string[]> {
  const l = await lookup(nqn);
  return l.state === "absent" ? [] : l.subsystem.controllers.map((c) => `${c.name}:${c.state}`);
}

export async function waitFor(what: string, fn: () => Promise<boolean> | boolean, timeoutMs: number, pollMs = 200) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await fn()) return;
    await Bun.sleep(pollMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export interface Cluster {
  dir: string;
  sim: RouterOsSim;
  target: RealExport;
  ctl: CsiClient;
  node: CsiClient;
  nodeId: string;
  /** The kubelet-style staging and publish paths of a volume. */
  stagingPath(name: string): string;
  targetPath(name: string): string;
  /** Kills csi-node without letting it clean up and starts it again on the same state. */
  restartNode(signal?: "SIGKILL" | "SIGTERM"): Promise<void>;
  runBin(args: string[], timeoutMs?: number): { code: number; stdout: string; stderr: string };
  stop(): Promise<void>;
}

function spawn(args: string[], log: string) {
  return Bun.spawn([BIN, ...args], {
    stdin: "ignore",
    stdout: Bun.file(log),
    stderr: Bun.file(`${log}.err`),
    env: { PATH: process.env.PATH! },
  });
}

async function waitReady(c: CsiClient, what: string, proc: Bun.Subprocess, log: string) {
  let last = "";
  for (let i = 0; i < 600; i++) {
    if (proc.exitCode !== null) break;
    try {
      const r = await c.identity.Probe({}, { deadlineMs: 2_000 });
      if (r?.ready?.value === true) return;
      last = JSON.stringify(r);
    } catch (e) {
      last = (e as Error).message;
    }
    await Bun.sleep(100);
  }
  const err = existsSync(`${log}.err`) ? readFileSync(`${log}.err`, "utf8").slice(-2000) : "";
  throw new Error(
    `${what} did not become ready (exit ${proc.exitCode}, last: ${last}):\n${err}\n${existsSync(log) ? readFileSync(log, "utf8").slice(-2000) : ""}`,
  );
}

async function stopProc(p: Bun.Subprocess, signal: "SIGTERM" | "SIGKILL" = "SIGTERM") {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill(signal);
  const done = await Promise.race([p.exited.then(() => true), Bun.sleep(20_000).then(() => false)]);
  if (!done) p.kill("SIGKILL");
  await p.exited;
}

export interface ClusterOptions {
  /** Controller defaults for the connection: ctrl_loss_tmo (s, -1 = forever) and reconnect_delay (s). */
  ctrlLossTmo?: number;
  reconnectDelay?: number;
  /** Extra csi-node flags (e.g. shorter deadlines for outage scenarios). */
  nodeFlags?: string[];
}

export async function startCluster(tag: string, opts: ClusterOptions = {}): Promise<Cluster> {
  requireVm();
  const dir = mkdtempSync(`/tmp/rds-vm-${tag}-`);
  for (const d of ["ctl", "node", "kubelet/plugins/kubernetes.io/csi", "kubelet/pods", "data"])
    mkdirSync(join(dir, d), { recursive: true });
  // The pool: an ext4 image on the VM's tmpfs, so nvmet gets O_DIRECT and ZERO_RANGE as on the RDS's Btrfs.
  const dataDir = join(dir, "data");
  sh(["truncate", "-s", "64G", join(dir, "pool.img")]);
  sh(["mkfs.ext4", "-q", "-E", "lazy_itable_init=1,lazy_journal_init=1", join(dir, "pool.img")]);
  sh(["mount", "-o", "loop", join(dir, "pool.img"), dataDir]);
  const target = createRealExport({ dataDir });
  const sim = await startRouterOsSim({ exporter: target });
  writeFileSync(join(dir, "password"), `${sim.password}\n`, { mode: 0o600 });
  writeFileSync(join(dir, "hostnqn"), `${HOST_NQN}\n`);
  const ctlSock = `unix://${dir}/ctl.sock`;
  const nodeSock = `unix://${dir}/node.sock`;
  const ctlArgs = [
    "csi-controller",
    "--backend",
    "routeros",
    "--routeros-url",
    sim.url,
    "--routeros-user",
    sim.user,
    "--routeros-password-file",
    join(dir, "password"),
    "--routeros-ca-file",
    sim.caFile,
    "--nqn-prefix",
    NQN_PREFIX,
    "--nvme-port",
    String(NVME_PORT),
    "--state-dir",
    join(dir, "ctl"),
    "--endpoint",
    ctlSock,
    ...(opts.ctrlLossTmo !== undefined ? ["--ctrl-loss-tmo", String(opts.ctrlLossTmo)] : []),
    ...(opts.reconnectDelay !== undefined ? ["--reconnect-delay", String(opts.reconnectDelay)] : []),
  ];
  const nodeArgs = [
    "csi-node",
    "--nqn-prefix",
    NQN_PREFIX,
    "--node-id",
    "vm-node",
    "--state-dir",
    join(dir, "node"),
    "--kubelet-dir",
    join(dir, "kubelet"),
    "--host-nqn-file",
    join(dir, "hostnqn"),
    "--endpoint",
    nodeSock,
    ...(opts.nodeFlags ?? []),
  ];
  const ctlProc = spawn(ctlArgs, join(dir, "ctl.log"));
  let nodeProc = spawn(nodeArgs, join(dir, "node.log"));
  const ctl = csiClient(ctlSock, { defaultDeadlineMs: 120_000 });
  const node = csiClient(nodeSock, { defaultDeadlineMs: 120_000 });
  await waitReady(ctl, "csi-controller", ctlProc, join(dir, "ctl.log"));
  await waitReady(node, "csi-node", nodeProc, join(dir, "node.log"));
  const info = await node.node.NodeGetInfo({});
  const kubelet = join(dir, "kubelet");

  return {
    dir,
    sim,
    target,
    ctl,
    node,
    nodeId: info.node_id,
    stagingPath(name) {
      const p = join(kubelet, "plugins/kubernetes.io/csi", DRIVER, name, "globalmount");
      mkdirSync(p, { recursive: true });
      return p;
    },
    targetPath(name) {
      const parent = join(kubelet, "pods", "pod-a", "volumes/kubernetes.io~csi", name);
      mkdirSync(parent, { recursive: true });
      return join(parent, "mount");
    },
    async restartNode(signal = "SIGKILL") {
      await stopProc(nodeProc, signal);
      nodeProc = spawn(nodeArgs, join(dir, "node.log.2"));
      await waitReady(node, "csi-node (restarted)", nodeProc, join(dir, "node.log.2"));
    },
    runBin(args, timeoutMs = 120_000) {
      return sh([BIN, ...args], { timeoutMs, allowFail: true });
    },
    async stop() {
      ctl.close();
      node.close();
      await Promise.all([stopProc(ctlProc), stopProc(nodeProc)]);
      // Only what lives under our directory: mounts deepest first, then managed NVMe connections.
      const mine = readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .map((l) => l.split(" ")[4] ?? "")
        .filter((mp) => mp.startsWith(`${dir}/`) && mp !== dataDir)
        .reverse();
      for (const mp of mine) sh(["umount", "-l", mp], { allowFail: true });
      for (const d of sim.state.disks()) {
        const nqn = d["nvme-tcp-server-nqn"];
        if (nqn?.startsWith(NQN_PREFIX)) sh(["nvme", "disconnect", "-n", nqn], { allowFail: true, timeoutMs: 30_000 });
      }
      target.close();
      await sim.close();
      sh(["umount", dataDir], { allowFail: true });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A CO-style volume name unique to this run. */
let seq = 0;
export const volName = (what: string) => `pvc-vm-${what}-${process.pid}-${++seq}`;

/** The block device (/dev/nvmeXnY) and its size for an NQN now, or null. */
export async function deviceOf(nqn: string): Promise<{ path: string; sizeBytes: number } | null> {
  const l = await lookup(nqn);
  return l.state === "found" ? { path: `/dev/${l.namespace.name}`, sizeBytes: l.namespace.sizeBytes ?? 0 } : null;
}

/** Mount points exactly at `path`, with their sources. */
export function mountsAt(path: string): { source: string; dev: string }[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" "))
    .filter((f) => f[4] === path)
    .map((f) => ({ dev: f[2]!, source: f[f.indexOf("-") + 2] ?? "" }));
}

export interface Staged {
  name: string;
  volumeId: string;
  nqn: string;
  volumeContext: Record<string, string>;
  publishContext: Record<string, string>;
  staging: string;
  target: string;
}

/** Create → ControllerPublish → NodeStage → NodePublish (ext4 unless told), each RPC logged. */
export async function provision(
  c: Cluster,
  scenario: string,
  what: string,
  opts: { fsType?: string; parameters?: Record<string, string> } = {},
): Promise<Staged> {
  const cap = mountCap(opts.fsType ?? "ext4");
  const name = volName(what);
  const v = okValue(
    await rpc(
      scenario,
      "CreateVolume",
      c.ctl.controller.CreateVolume({
        name,
        capacity_range: { required_bytes: GiB },
        volume_capabilities: [cap],
        parameters: opts.parameters ?? {},
      }),
    ),
  ).volume;
  const pub = okValue(
    await rpc(
      scenario,
      "ControllerPublishVolume",
      c.ctl.controller.ControllerPublishVolume({
        volume_id: v.volume_id,
        node_id: c.nodeId,
        volume_capability: cap,
        readonly: false,
        volume_context: v.volume_context,
      }),
    ),
  );
  const s: Staged = {
    name,
    volumeId: v.volume_id,
    nqn: v.volume_context.nqn,
    volumeContext: v.volume_context,
    publishContext: pub.publish_context ?? {},
    staging: c.stagingPath(name),
    target: c.targetPath(name),
  };
  okValue(await rpc(scenario, "NodeStageVolume", stage(c, s, cap)));
  okValue(
    await rpc(
      scenario,
      "NodePublishVolume",
      c.node.node.NodePublishVolume({
        volume_id: s.volumeId,
        staging_target_path: s.staging,
        target_path: s.target,
        volume_capability: cap,
        readonly: false,
        volume_context: s.volumeContext,
        publish_context: s.publishContext,
      }),
    ),
  );
  return s;
}

/** The NodeStageVolume call for a provisioned volume (for restage and failure scenarios). */
export function stage(c: Cluster, s: Staged, cap = mountCap("ext4"), deadlineMs?: number) {
  return c.node.node.NodeStageVolume(
    {
      volume_id: s.volumeId,
      staging_target_path: s.staging,
      volume_capability: cap,
      volume_context: s.volumeContext,
      publish_context: s.publishContext,
    },
    deadlineMs ? { deadlineMs } : {},
  );
}

/** NodeUnpublish + NodeUnstage, logged; returns the unstage outcome. */
export async function teardown(c: Cluster, scenario: string, s: Staged, deadlineMs?: number) {
  okValue(
    await rpc(
      scenario,
      "NodeUnpublishVolume",
      c.node.node.NodeUnpublishVolume({ volume_id: s.volumeId, target_path: s.target }),
    ),
  );
  return rpc(
    scenario,
    "NodeUnstageVolume",
    c.node.node.NodeUnstageVolume(
      { volume_id: s.volumeId, staging_target_path: s.staging },
      deadlineMs ? { deadlineMs } : {},
    ),
  );
}

/** sha256 of a file read with O_DIRECT after dropping the page cache: what the target really holds. */
export function directSha(path: string): string {
  sh(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"]);
  return sh(["sh", "-c", `dd if='${path}' bs=1M iflag=direct status=none | sha256sum`]).stdout.split(" ")[0]!;
}

/** `nvme connect` by hand, the way a diskless node's initrd or an operator would. */
export async function connectByHand(nqn: string, port = NVME_PORT, extra: string[] = []) {
  sh(["nvme", "connect", "-t", "tcp", "-a", "127.0.0.1", "-s", String(port), "-n", nqn, "-q", HOST_NQN, ...extra]);
  await waitFor(`a block device for ${nqn}`, async () => (await deviceOf(nqn)) !== null, 15_000);
  return (await deviceOf(nqn))!;
}

/** A disk the operator exported outside the driver (a diskless node's root, say), straight into the simulator. */
export function seedExport(c: Cluster, slot: string, nqn: string, port = NVME_PORT) {
  return c.sim.state.seedDisk({
    slot,
    "file-path": `storage-pool/system/${slot}.img`,
    "file-size": String(GiB),
    size: String(GiB),
    "nvme-tcp-export": "true",
    "nvme-tcp-server-nqn": nqn,
    "nvme-tcp-server-port": String(port),
  });
}

/** rds-csi doctor --json on this cluster's node directories. */
/** `kernelLogSince`: count only kernel log lines from then on (other scenarios in the same VM boot leave real I/O errors). */
export function doctor(c: Cluster, opts: { kernelLogSince?: number } = {}) {
  const window =
    opts.kernelLogSince === undefined
      ? []
      : ["--kernel-log-window", `${Math.ceil((Date.now() - opts.kernelLogSince) / 1000) + 1}s`];
  const r = c.runBin(
    [
      "doctor",
      "--json",
      "--nqn-prefix",
      NQN_PREFIX,
      "--kubelet-dir",
      join(c.dir, "kubelet"),
      "--state-dir",
      join(c.dir, "node"),
      "--host-nqn-file",
      join(c.dir, "hostnqn"),
      "--sample-interval",
      "200ms",
      ...window,
    ],
    120_000,
  );
  let report:
    { findings: { check: string; class: string; severity: string; message: string; details?: any }[] } | undefined;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    /* reported below */
  }
  if (!report) throw new Error(`doctor printed no JSON (exit ${r.code}): ${r.stderr.slice(-1500)}`);
  const byClass = (cls: string) => report!.findings.find((f) => f.class === cls);
  return { code: r.code, report, byClass, stderr: r.stderr };
}

/** rds-csi gc --json on this cluster's node (csi-node may be running: --ignore-lock), plan or --force. */
export function gc(c: Cluster, opts: { force?: boolean; referenced?: string[] } = {}) {
  const r = c.runBin(
    [
      "gc",
      "--json",
      "--ignore-lock",
      "--nqn-prefix",
      NQN_PREFIX,
      "--kubelet-dir",
      join(c.dir, "kubelet"),
      "--state-dir",
      join(c.dir, "node"),
      "--step-timeout",
      "20s",
      "--referenced-volumes",
      ...(opts.referenced?.length ? opts.referenced : [""]),
      ...(opts.force ? ["--force"] : []),
    ],
    180_000,
  );
  let out:
    | {
        candidates: { kind: string; id: string; reason: string }[];
        skipped: { kind: string; id: string; reason: string }[];
        results?: { status: string; kind: string; id: string; detail?: string }[];
      }
    | undefined;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    /* reported below */
  }
  if (!out) throw new Error(`gc printed no JSON (exit ${r.code}): ${r.stderr.slice(-1500)}`);
  return { code: r.code, ...out, stderr: r.stderr };
}
