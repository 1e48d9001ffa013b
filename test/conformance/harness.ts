/**
 * A two-process "cluster" for the CSI conformance suite: csi-controller (file backend) and csi-node
 * (loop connector) as separate `bun src/main.ts` processes on separate unix sockets, driven over
 * real gRPC the way the external-provisioner/attacher and the kubelet drive them.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { csiClient, type CsiClient } from "../../src/csi/client.ts";
import { releaseUnder } from "../helpers/release-under.ts";

const REPO = join(import.meta.dir, "..", "..");
export const NQN_PREFIX = "nqn.2000-02.com.mikrotik:pvc-";
export const HOST_NQN = "nqn.2014-08.org.nvmexpress:uuid:0c0c0c0c-0000-4000-8000-00000000c0f1";
export const GiB = 2 ** 30;
export const DRIVER = "rds.csi.srvlab.io";

/** gRPC status codes used by the CSI spec table. */
export const Code = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  UNAVAILABLE: 14,
  RESOURCE_EXHAUSTED: 8,
} as const;

export interface Outcome<T = any> {
  code: number;
  details: string;
  value?: T;
}

/** Awaits an RPC and reports its status: code 0 with the value, or the error's code and details. */
export async function outcome<T = any>(p: Promise<T>): Promise<Outcome<T>> {
  try {
    return { code: 0, details: "", value: await p };
  } catch (e) {
    const err = e as { code?: number; details?: string; message?: string };
    return { code: typeof err.code === "number" ? err.code : -1, details: err.details ?? err.message ?? String(e) };
  }
}

export const mountCap = (fs_type = "ext4", mode = "SINGLE_NODE_WRITER", mount_flags: string[] = []) => ({
  mount: { fs_type, mount_flags },
  access_mode: { mode },
});
export const blockCap = (mode = "SINGLE_NODE_WRITER") => ({ block: {}, access_mode: { mode } });

/** Mount points exactly at `path`, from this process's mount table. */
export function mountsAt(path: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.split(" ")[4] === path);
}

function spawnDaemon(args: string[], logFile: string, env: Record<string, string>) {
  return Bun.spawn(["bun", "src/main.ts", ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: Bun.file(logFile),
    stderr: Bun.file(`${logFile}.err`),
  });
}

async function waitReady(c: CsiClient, what: string, proc: Bun.Subprocess, logFile: string) {
  let last = "";
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) break;
    const r = await outcome(c.identity.Probe({}, { deadlineMs: 1_000 }));
    if (r.code === 0 && r.value?.ready?.value === true) return;
    last = r.code === 0 ? JSON.stringify(r.value) : r.details;
    await Bun.sleep(100);
  }
  const log = existsSync(`${logFile}.err`) ? readFileSync(`${logFile}.err`, "utf8").slice(-2000) : "";
  throw new Error(`${what} did not become ready (exit ${proc.exitCode}, last: ${last}):\n${log}`);
}

export interface Cluster {
  dir: string;
  ctl: CsiClient;
  node: CsiClient;
  /** node_id as reported by NodeGetInfo (what the attacher passes to ControllerPublish). */
  nodeId: string;
  nodeProc: Bun.Subprocess;
  ctlProc: Bun.Subprocess;
  /** While this file exists, fsck.ext4 and mkfs.ext4 on the node pause 5 s first (slow-stage experiments). */
  slowMarker: string;
  /** Resolves once a slowed tool has started its pause (the operation holding it is mid-flight). */
  slowStarted(): Promise<void>;
  staging(name: string): string;
  target(name: string, podUid?: string): string;
  blockStaging(name: string): string;
  blockTarget(name: string, podUid?: string): string;
  cleanup(): Promise<void>;
}

/**
 * Starts csi-controller and csi-node as two processes. The node's PATH starts with a directory
 * holding fsck.ext4/mkfs.ext4 wrappers that sleep while `slowMarker` exists and then exec the real
 * tool, so a test can hold a NodeStageVolume open without touching src/.
 */
export async function startCluster(tag: string): Promise<Cluster> {
  const dir = mkdtempSync(`/tmp/rds-conf-${tag}-`);
  for (const d of ["disks", "ctl", "node", "kubelet/plugins/kubernetes.io/csi", "kubelet/pods", "slowbin"])
    mkdirSync(join(dir, d), { recursive: true });
  const slowMarker = join(dir, "slow");
  for (const tool of ["fsck.ext4", "mkfs.ext4"]) {
    const real = Bun.which(tool);
    if (!real) throw new Error(`${tool} is not installed`);
    writeFileSync(
      join(dir, "slowbin", tool),
      `#!/bin/sh\nif [ -e '${slowMarker}' ]; then : > '${slowMarker}.started'; sleep 5; fi\nexec '${real}' "$@"\n`,
    );
    chmodSync(join(dir, "slowbin", tool), 0o755);
  }
  writeFileSync(join(dir, "hostnqn"), `${HOST_NQN}\n`);
  const ctlSock = `unix://${dir}/ctl.sock`;
  const nodeSock = `unix://${dir}/node.sock`;
  const ctlProc = spawnDaemon(
    [
      "csi-controller",
      "--backend",
      "file",
      "--file-dir",
      `${dir}/disks`,
      "--state-dir",
      `${dir}/ctl`,
      "--endpoint",
      ctlSock,
    ],
    `${dir}/ctl.log`,
    {},
  );
  const nodeProc = spawnDaemon(
    [
      "csi-node",
      "--nqn-prefix",
      NQN_PREFIX,
      "--node-id",
      "conf-node",
      "--state-dir",
      `${dir}/node`,
      "--kubelet-dir",
      `${dir}/kubelet`,
      "--file-dir",
      `${dir}/disks`,
      "--host-nqn-file",
      `${dir}/hostnqn`,
      "--endpoint",
      nodeSock,
    ],
    `${dir}/node.log`,
    { PATH: `${dir}/slowbin:${process.env.PATH}` },
  );
  const ctl = csiClient(ctlSock, { defaultDeadlineMs: 90_000 });
  const node = csiClient(nodeSock, { defaultDeadlineMs: 90_000 });
  await waitReady(ctl, "csi-controller", ctlProc, `${dir}/ctl.log`);
  await waitReady(node, "csi-node", nodeProc, `${dir}/node.log`);
  const info = await node.node.NodeGetInfo({});

  const kubelet = join(dir, "kubelet");
  const staging = (name: string) => {
    const p = join(kubelet, "plugins/kubernetes.io/csi", DRIVER, name, "globalmount");
    mkdirSync(p, { recursive: true });
    return p;
  };
  const target = (name: string, podUid = "pod-a") => {
    const parent = join(kubelet, "pods", podUid, "volumes/kubernetes.io~csi", name);
    mkdirSync(parent, { recursive: true });
    return join(parent, "mount");
  };
  const blockStaging = (name: string) => {
    const p = join(kubelet, "plugins/kubernetes.io/csi/volumeDevices/staging", name);
    mkdirSync(p, { recursive: true });
    return p;
  };
  const blockTarget = (name: string, podUid = "pod-a") => {
    const parent = join(kubelet, "pods", podUid, "volumeDevices/kubernetes.io~csi");
    mkdirSync(parent, { recursive: true });
    return join(parent, name);
  };

  async function stop(p: Bun.Subprocess) {
    if (p.exitCode !== null || p.signalCode !== null) return;
    p.kill("SIGTERM");
    const done = await Promise.race([p.exited.then(() => true), Bun.sleep(20_000).then(() => false)]);
    if (!done) p.kill("SIGKILL");
  }

  async function cleanup() {
    ctl.close();
    node.close();
    await Promise.all([stop(ctlProc), stop(nodeProc)]);
    // Only what lives under our temp dir: mounts deepest first, then loop devices backed by our files.
    releaseUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  }

  async function slowStarted() {
    const flag = `${slowMarker}.started`;
    for (let i = 0; i < 600; i++) {
      if (existsSync(flag)) {
        rmSync(flag);
        return;
      }
      await Bun.sleep(50);
    }
    throw new Error("no slowed fsck.ext4/mkfs.ext4 started within 30 s");
  }

  return {
    dir,
    ctl,
    node,
    nodeId: info.node_id,
    nodeProc,
    ctlProc,
    slowMarker,
    slowStarted,
    staging,
    target,
    blockStaging,
    blockTarget,
    cleanup,
  };
}

let seq = 0;
/** A CO-style volume name unique to this run. */
export const volName = (what: string) => `pvc-conf-${what}-${process.pid}-${++seq}`;

/** Loop devices currently backed by `file`. */
export function loopsOf(file: string): string[] {
  const out = execFileSync("losetup", ["-j", file], { encoding: "utf8" });
  return out
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(":")[0]!);
}
