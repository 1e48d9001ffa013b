import { classifyNqn } from "../config/nqn.ts";
import type { MountEntry } from "../mount/mountinfo.ts";
import { planAllowedHosts } from "./allowed-hosts.ts";
import { isStrictlyUnder, ownKubeletMounts } from "./ownership.ts";
import type { StagingRecord } from "./records.ts";
import type { Candidate, GcFacts, GcPlan, Skipped } from "./types.ts";

/**
 * facts → plan, with no I/O: the same function decides in plan mode, and again on fresh facts
 * right before each --force step. Everything not proven collectable is left alone; the
 * reasons go to `skipped` so --verbose can show why.
 */

/** Order in which --force acts: nothing is detached under a mount, no record goes before its device. */
export const PHASES: readonly Candidate["kind"][] = [
  "dead-mount",
  "nvme-subsystem",
  "orphaned-subsystem",
  "loop-device",
  "stale-record",
  "allowed-host",
  "backend-disk",
];

interface World {
  /** Mounts that stay after the planned unmounts. */
  staying: MountEntry[];
  mountedDevs: Map<string, MountEntry>;
  connected: Map<string, { namespaces: { name: string; dev: string }[] }>;
  loopsByFile: Map<string, string[]>;
}

function deadReason(m: MountEntry, f: GcFacts): string | null {
  const p = f.probes.get(m.mountPoint);
  if (p && p.state === "dead") return `mount does not answer (${p.reason})`;
  if (p && p.state === "error") return `mount answers with an error (${p.reason})`;
  // Only device-backed mounts can lose their device; pseudo filesystems have major 0.
  if (f.blockDevs && m.source.startsWith("/dev/") && m.major !== 0 && !f.blockDevs.has(m.dev)) {
    return `its device ${m.source} (${m.dev}) is gone`;
  }
  return null;
}

function buildWorld(f: GcFacts, goingAway: ReadonlySet<number>): World {
  const staying = f.mounts.filter((m) => !goingAway.has(m.id));
  const mountedDevs = new Map<string, MountEntry>();
  for (const m of staying) if (!mountedDevs.has(m.dev)) mountedDevs.set(m.dev, m);
  const connected = new Map<string, { namespaces: { name: string; dev: string }[] }>();
  for (const s of f.subsystems) {
    const cur = connected.get(s.nqn) ?? { namespaces: [] };
    cur.namespaces.push(...s.namespaces);
    connected.set(s.nqn, cur);
  }
  const loopsByFile = new Map<string, string[]>();
  for (const l of f.loopDevices) loopsByFile.set(l.backingFile, [...(loopsByFile.get(l.backingFile) ?? []), l.device]);
  return { staying, mountedDevs, connected, loopsByFile };
}

/** A record is live while its volume is staged: mounted at its staging path, or (block) attached. */
function recordLiveness(r: StagingRecord, w: World): string | null {
  const m = w.staying.find((x) => x.mountPoint === r.staging_path);
  if (m) return `staged: mounted at ${r.staging_path}`;
  // Block volumes have no staging mount; a stage that never finished has none yet: attached = in use.
  if (r.transport === "nvme-tcp" && r.nqn && (w.connected.get(r.nqn)?.namespaces.length ?? 0) > 0)
    return `${r.access_type === "block" ? "block volume" : "not mounted but"} attached (${r.nqn})`;
  if (r.transport === "loop" && r.backing_file && w.loopsByFile.has(r.backing_file))
    return `${r.access_type === "block" ? "block volume" : "not mounted but"} attached (${r.backing_file})`;
  return null;
}

export function plan(f: GcFacts): GcPlan {
  const candidates: Candidate[] = [];
  const skipped: Skipped[] = [];
  const policy = f.policy;
  const gate = (nqn: string) => classifyNqn(nqn, policy, f.systemNqns);

  // 1. Dead mounts of this driver in the kubelet tree.
  const own = ownKubeletMounts(f.mounts, {
    kubeletDir: f.kubeletDir,
    driverName: f.driverName,
    stagingPaths: new Set(f.records.map((r) => r.staging_path)),
    volDataMounts: f.volDataMounts,
  });
  const goingAway = new Set<number>();
  for (const { mount: m, why } of own) {
    const dead = deadReason(m, f);
    if (!dead) continue;
    goingAway.add(m.id);
    candidates.push({
      kind: "dead-mount",
      id: m.mountPoint,
      reason: `${dead}; ours: ${why}`,
      action: { type: "unmount", mountPoint: m.mountPoint, dev: m.dev },
    });
  }
  const w = buildWorld(f, goingAway);
  const live = new Map<string, string>();
  for (const r of f.records) {
    const why = recordLiveness(r, w);
    if (why) live.set(r.volume_id, why);
  }
  const liveRecordFor = (pred: (r: StagingRecord) => boolean) =>
    f.records.find((r) => live.has(r.volume_id) && pred(r));

  // 2. NVMe subsystems, each NQN once (a subsystem can appear twice while the kernel renumbers).
  const disconnecting = new Set<string>();
  for (const [nqn, s] of w.connected) {
    const verdict = gate(nqn);
    const kind = s.namespaces.length === 0 ? "orphaned-subsystem" : "nvme-subsystem";
    if (!verdict.managed) {
      skipped.push({ kind, id: nqn, reason: `${verdict.reason}: ${verdict.detail}` });
      continue;
    }
    const rec = liveRecordFor((r) => r.nqn === nqn);
    if (rec) {
      skipped.push({ kind, id: nqn, reason: `staging record ${rec.volume_id} is live (${live.get(rec.volume_id)})` });
      continue;
    }
    const mounted = s.namespaces
      .map((ns) => ({
        ns,
        m: [ns.dev, ...(f.stackedDevs.get(ns.name) ?? [])].map((d) => w.mountedDevs.get(d)).find(Boolean),
      }))
      .find((x) => x.m);
    if (mounted) {
      skipped.push({ kind, id: nqn, reason: `namespace ${mounted.ns.name} is mounted at ${mounted.m!.mountPoint}` });
      continue;
    }
    disconnecting.add(nqn);
    candidates.push({
      kind,
      id: nqn,
      reason:
        kind === "orphaned-subsystem"
          ? "connected without a namespace device"
          : `managed, ${s.namespaces.map((n) => n.name).join(", ")} not mounted, no staging record`,
      action: { type: "nvme-disconnect", nqn },
    });
  }

  // 3. Loop devices whose backing file is ours.
  const recordFiles = new Set(f.records.filter((r) => r.backing_file).map((r) => r.backing_file!));
  const ownedDirs = [...f.ownedFileDirs, f.stateDir];
  const detaching = new Set<string>();
  for (const l of f.loopDevices) {
    const ours = recordFiles.has(l.backingFile) || ownedDirs.some((d) => isStrictlyUnder(l.backingFile, d));
    if (!ours) {
      skipped.push({ kind: "loop-device", id: l.device, reason: `backing file ${l.backingFile} is not ours` });
      continue;
    }
    const rec = liveRecordFor((r) => r.backing_file === l.backingFile);
    if (rec) {
      skipped.push({
        kind: "loop-device",
        id: l.device,
        reason: `staging record ${rec.volume_id} is live (${live.get(rec.volume_id)})`,
      });
      continue;
    }
    const m = w.mountedDevs.get(l.dev);
    if (m) {
      skipped.push({ kind: "loop-device", id: l.device, reason: `mounted at ${m.mountPoint}` });
      continue;
    }
    const holders = f.loopHolders.get(l.device.replace(/^\/dev\//, "")) ?? [];
    if (holders.length > 0) {
      skipped.push({ kind: "loop-device", id: l.device, reason: `in use by ${holders.join(", ")}` });
      continue;
    }
    detaching.add(l.backingFile);
    candidates.push({
      kind: "loop-device",
      id: l.device,
      reason: `backing file ${l.backingFile}${l.backingFileDeleted ? " (deleted)" : ""} is ours and nothing mounts it`,
      action: { type: "loop-detach", device: l.device, backingFile: l.backingFile },
    });
  }

  // 4. Records of volumes that are no longer staged.
  for (const r of f.records) {
    const why = live.get(r.volume_id);
    if (why) {
      skipped.push({ kind: "stale-record", id: r.volume_id, reason: why });
      continue;
    }
    candidates.push({
      kind: "stale-record",
      id: r.volume_id,
      reason: `${r.access_type === "mount" ? `nothing mounted at ${r.staging_path}` : "device not attached"} (staged ${r.staged_at})`,
      action: { type: "delete-record", path: r.path, volumeId: r.volume_id, stagedAt: r.staged_at },
    });
  }
  for (const u of f.unreadableRecords)
    skipped.push({ kind: "stale-record", id: u.path, reason: `not a staging record gc can read: ${u.reason}` });

  // 5. Backend disks nobody references.
  planBackend(f, w, { disconnecting, detaching, live, candidates, skipped });
  // 6. Allowed hosts of exports that no Node or VolumeAttachment accounts for.
  planAllowedHosts(f, { candidates, skipped });

  candidates.sort((a, b) => PHASES.indexOf(a.kind) - PHASES.indexOf(b.kind));
  return { candidates, skipped };
}

function planBackend(
  f: GcFacts,
  w: World,
  acc: {
    disconnecting: ReadonlySet<string>;
    detaching: ReadonlySet<string>;
    live: ReadonlyMap<string, string>;
    candidates: Candidate[];
    skipped: Skipped[];
  },
) {
  const b = f.backend;
  if (b.state === "absent") return;
  if (b.state === "error") {
    acc.skipped.push({ kind: "backend", id: b.address, reason: `backend not listed: ${b.reason}` });
    return;
  }
  if (f.referenced.state === "unknown") {
    acc.skipped.push({
      kind: "backend",
      id: b.address,
      reason: `no backend disk is collected: cannot tell which volumes are referenced (${f.referenced.reason})`,
    });
    return;
  }
  for (const k of b.orphans.kept) acc.skipped.push({ kind: "backend-disk", id: k.volumeId, reason: k.reason });
  for (const o of b.orphans.candidates) {
    const d = b.disks.find((x) => x.id === o.volumeId);
    const skip = (reason: string) => acc.skipped.push({ kind: "backend-disk", id: o.volumeId, reason });
    if (!d) {
      skip("not in the disk list");
      continue;
    }
    if (d.nqn) {
      const verdict = classifyNqn(d.nqn, f.policy, f.systemNqns);
      if (!verdict.managed) {
        skip(`its NQN ${d.nqn}: ${verdict.reason}: ${verdict.detail}`);
        continue;
      }
    }
    if (acc.live.has(d.id)) {
      skip(`staged on this node (${acc.live.get(d.id)})`);
      continue;
    }
    if (d.nqn && w.connected.has(d.nqn) && !acc.disconnecting.has(d.nqn)) {
      skip(`connected on this node (${d.nqn})`);
      continue;
    }
    if (w.loopsByFile.has(d.filePath) && !acc.detaching.has(d.filePath)) {
      skip(`attached on this node as ${w.loopsByFile.get(d.filePath)!.join(", ")}`);
      continue;
    }
    const age = o.ageMs;
    acc.candidates.push({
      kind: "backend-disk",
      id: d.id,
      reason: `no PersistentVolume references it, ${Math.round(age / 60_000)} min old, not published`,
      action: { type: "delete-disk", diskId: d.id, ...(d.nqn ? { nqn: d.nqn } : {}) },
    });
  }
}
