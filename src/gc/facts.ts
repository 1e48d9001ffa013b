import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Backend, Disk } from "../backends/backend.ts";
import { findOrphans } from "../backends/orphans.ts";
import type { NqnPolicy } from "../config/nqn.ts";
import { readMountinfo, type MountEntry } from "../mount/mountinfo.ts";
import { createProbeRegistry, type ProbeResult } from "../mount/probe.ts";
import { listSubsystems, type NvmeSubsystem } from "../nvme/sysfs.ts";
import { systemVolumeNqns } from "../nvme/system-volumes.ts";
import { withDeadline } from "../runtime/deadline.ts";
import { errorMessage } from "../runtime/errors.ts";
import type { Runner } from "../runtime/exec.ts";
import type { Logger } from "../runtime/log.ts";
import { listEntries, readAttribute } from "../sysfs/attributes.ts";
import { partitionsOf, stackedDevs } from "../sysfs/block-stack.ts";
import { listLoopDevices } from "./loop-devices.ts";
import { ownKubeletMounts, volDataPathFor } from "./ownership.ts";
import { readStagingRecords } from "./records.ts";
import type { AttachmentFacts, BackendFacts, GcFacts, ReferencedFacts } from "./types.ts";

/**
 * Gathers what plan() needs. Every read has a deadline; mount points are only ever probed from
 * child processes; a fact that cannot be read fails the whole gathering (gc never plans on a
 * half-seen world), except the backend and the PV list, whose absence only blocks backend disks.
 */
export interface FactDeps {
  runner: Runner;
  log: Logger;
  policy: NqnPolicy;
  driverName: string;
  sysfsRoot: string;
  procRoot: string;
  kubeletDir: string;
  stateDir: string;
  ownedFileDirs: readonly string[];
  /** Deadline of each individual read. */
  timeoutMs: number;
  /** Deadline of a mount probe (a mount that does not answer within it is dead). */
  probeTimeoutMs: number;
  backend?: Backend;
  /** How referenced volume ids are found; called only when a backend is given. */
  referenced?: () => Promise<ReferencedFacts>;
  /** Nodes and VolumeAttachments, for stale allowed hosts; called only when a backend is listed. */
  attachments?: () => Promise<AttachmentFacts>;
  slotPrefix: string;
  graceMs: number;
  now?: () => number;
  signal?: AbortSignal;
}

/**
 * Device numbers the kernel has right now, from `dev/block` and `block/*` (with partitions).
 * Null when sysfs shows none at all: an empty answer must not make every mount look deviceless.
 */
export function readBlockDevs(sysfsRoot: string, timeoutMs: number, signal?: AbortSignal): Promise<Set<string> | null> {
  return withDeadline(
    `scan of ${sysfsRoot}/block`,
    timeoutMs,
    async () => {
      const devs = new Set((await listEntries(join(sysfsRoot, "dev", "block"))).filter((n) => /^\d+:\d+$/.test(n)));
      for (const name of await listEntries(join(sysfsRoot, "block"))) {
        const dev = await readAttribute(join(sysfsRoot, "block", name, "dev"));
        if (dev) devs.add(dev);
        for (const part of await partitionsOf(sysfsRoot, name)) {
          const pdev = await readAttribute(join(sysfsRoot, "block", name, part, "dev"));
          if (pdev) devs.add(pdev);
        }
      }
      return devs.size > 0 ? devs : null;
    },
    signal,
  );
}

/** Partitions of each namespace and whatever is stacked on it (holders, recursively), as device numbers. */
function readStackedDevs(
  sysfsRoot: string,
  subsystems: NvmeSubsystem[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Map<string, string[]>> {
  return withDeadline(
    "scan of namespace partitions and holders",
    timeoutMs,
    async () => {
      const out = new Map<string, string[]>();
      for (const s of subsystems) {
        for (const ns of s.namespaces) {
          const devs = await stackedDevs(sysfsRoot, ns.name);
          if (devs.size) out.set(ns.name, [...devs]);
        }
      }
      return out;
    },
    signal,
  );
}

function readLoopHolders(
  sysfsRoot: string,
  devices: string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Map<string, string[]>> {
  return withDeadline(
    "scan of loop device holders",
    timeoutMs,
    async () => {
      const out = new Map<string, string[]>();
      for (const d of devices) {
        const name = d.replace(/^\/dev\//, "");
        const holders = await listEntries(join(sysfsRoot, "block", name, "holders"));
        if (holders.length) out.set(name, holders);
      }
      return out;
    },
    signal,
  );
}

/** Kubelet mount points whose vol_data.json (beside the mount point) names this driver. */
function readVolData(
  mounts: MountEntry[],
  kubeletDir: string,
  driverName: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Set<string>> {
  return withDeadline(
    "reading kubelet vol_data.json files",
    timeoutMs,
    async () => {
      const out = new Set<string>();
      for (const m of mounts) {
        const p = volDataPathFor(m.mountPoint, kubeletDir);
        if (!p) continue;
        try {
          const data = JSON.parse(await readFile(p, "utf8")) as { driverName?: unknown };
          if (data.driverName === driverName) out.add(m.mountPoint);
        } catch {
          /* no file or not JSON: not provably ours */
        }
      }
      return out;
    },
    signal,
  );
}

async function probeAll(paths: string[], timeoutMs: number, log: Logger): Promise<Map<string, ProbeResult>> {
  const out = new Map<string, ProbeResult>();
  if (paths.length === 0) return out;
  const registry = createProbeRegistry({ timeoutMs, log });
  try {
    const results = await Promise.all(paths.map((p) => registry.probe(p)));
    paths.forEach((p, i) => out.set(p, results[i]!));
  } finally {
    registry.close();
  }
  return out;
}

/** A view of the backend that answers listDisks from a list already read (one listing per run). */
export const withDiskList = (backend: Backend, disks: Disk[]): Backend => ({
  ...backend,
  listDisks: () => Promise.resolve(disks),
});

export async function backendFacts(
  backend: Backend,
  referenced: ReferencedFacts,
  q: { slotPrefix: string; graceMs: number; now: number; timeoutMs: number; signal?: AbortSignal },
  disks?: Disk[],
): Promise<BackendFacts> {
  try {
    const list =
      disks ??
      (await withDeadline(
        `listing disks of ${backend.address}`,
        q.timeoutMs,
        (sig) => backend.listDisks(sig),
        q.signal,
      ));
    const orphans = await findOrphans(withDiskList(backend, list), {
      referencedVolumeIds: referenced.state === "known" ? referenced.volumeIds : undefined,
      slotPrefix: q.slotPrefix,
      graceMs: q.graceMs,
      now: q.now,
    });
    return { state: "ok", address: backend.address, disks: list, orphans };
  } catch (e) {
    return { state: "error", address: backend.address, reason: errorMessage(e) };
  }
}

export interface GatherOptions {
  /** Skip mount probes (re-checks: a mount found dead once is not re-probed; others count as alive). */
  probe?: boolean;
  /** Skip listing backend disks (re-checks ask for one disk themselves). */
  listBackend?: boolean;
  /** Reuse an already known PV list. */
  referenced?: ReferencedFacts;
}

export async function gatherFacts(deps: FactDeps, opts: GatherOptions = {}): Promise<GcFacts> {
  const t = deps.timeoutMs;
  const sig = deps.signal;
  const [mounts, subsystems, loopDevices, recordScan, blockDevs] = await Promise.all([
    readMountinfo({ runner: deps.runner, procRoot: deps.procRoot, timeoutMs: t, ...(sig ? { signal: sig } : {}) }),
    listSubsystems(deps.sysfsRoot, { timeoutMs: t, ...(sig ? { signal: sig } : {}) }),
    listLoopDevices(deps.runner, { timeoutMs: t, ...(sig ? { signal: sig } : {}) }),
    readStagingRecords(deps.stateDir, { timeoutMs: t, ...(sig ? { signal: sig } : {}) }),
    readBlockDevs(deps.sysfsRoot, t, sig),
  ]);
  const [systemNqns, stackedDevs, loopHolders, volDataMounts] = await Promise.all([
    systemVolumeNqns(
      deps.sysfsRoot,
      mounts,
      { workloadTrees: [deps.kubeletDir], timeoutMs: t, ...(sig ? { signal: sig } : {}) },
      subsystems,
    ),
    readStackedDevs(deps.sysfsRoot, subsystems, t, sig),
    readLoopHolders(
      deps.sysfsRoot,
      loopDevices.map((l) => l.device),
      t,
      sig,
    ),
    readVolData(mounts, deps.kubeletDir, deps.driverName, t, sig),
  ]);
  const own = ownKubeletMounts(mounts, {
    kubeletDir: deps.kubeletDir,
    driverName: deps.driverName,
    stagingPaths: new Set(recordScan.records.map((r) => r.staging_path)),
    volDataMounts,
  });
  const probes =
    opts.probe === false
      ? new Map<string, ProbeResult>()
      : await probeAll([...new Set(own.map((o) => o.mount.mountPoint))], deps.probeTimeoutMs, deps.log);

  const now = (deps.now ?? Date.now)();
  let backend: BackendFacts = { state: "absent" };
  let attachments: AttachmentFacts | undefined;
  let referenced: ReferencedFacts = opts.referenced ?? { state: "unknown", reason: "no backend given" };
  if (deps.backend && opts.listBackend !== false) {
    if (!opts.referenced) {
      referenced = deps.referenced
        ? await deps.referenced().catch((e): ReferencedFacts => ({ state: "unknown", reason: errorMessage(e) }))
        : { state: "unknown", reason: "give --referenced-volumes, or run in-cluster with access to PersistentVolumes" };
    }
    backend = await backendFacts(deps.backend, referenced, {
      slotPrefix: deps.slotPrefix,
      graceMs: deps.graceMs,
      now,
      timeoutMs: t,
      ...(sig ? { signal: sig } : {}),
    });
    if (deps.attachments)
      attachments = await deps
        .attachments()
        .catch((e): AttachmentFacts => ({ state: "unknown", reason: errorMessage(e) }));
  }
  return {
    now,
    policy: deps.policy,
    driverName: deps.driverName,
    kubeletDir: deps.kubeletDir,
    stateDir: deps.stateDir,
    ownedFileDirs: deps.ownedFileDirs,
    subsystems,
    systemNqns,
    mounts,
    blockDevs,
    loopDevices,
    stackedDevs,
    loopHolders,
    records: recordScan.records,
    unreadableRecords: recordScan.unreadable,
    probes,
    volDataMounts,
    backend,
    referenced,
    ...(attachments ? { attachments } : {}),
  };
}
