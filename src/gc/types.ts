import type { Disk } from "../backends/backend.ts";
import type { OrphanReport } from "../backends/orphans.ts";
import type { NqnPolicy } from "../config/nqn.ts";
import type { MountEntry } from "../mount/mountinfo.ts";
import type { ProbeResult } from "../mount/probe.ts";
import type { NvmeSubsystem } from "../nvme/sysfs.ts";
import type { StagingRecord } from "./records.ts";

/** A loop device as losetup reports it. `backingFile` has the kernel's " (deleted)" suffix removed. */
export interface LoopDevice {
  /** /dev/loopN */
  device: string;
  /** "major:minor" */
  dev: string;
  backingFile: string;
  backingFileDeleted: boolean;
}

/** What the backend side looked like, or why it could not be asked. */
export type BackendFacts =
  | { state: "absent" }
  /** `orphans` is the controller's verdict (findOrphans); plan adds what only this node can see. */
  | { state: "ok"; address: string; disks: Disk[]; orphans: OrphanReport }
  | { state: "error"; address: string; reason: string };

/** Which PersistentVolumes exist; unknown means no backend disk may be collected. */
export type ReferencedFacts =
  { state: "known"; source: string; volumeIds: ReadonlySet<string> } | { state: "unknown"; reason: string };

/**
 * Which Nodes exist and which (volume, node) pairs a VolumeAttachment references (via its PV's
 * volume handle). Unknown means no allowed host is ever reported stale.
 */
export type AttachmentFacts =
  | { state: "known"; source: string; nodes: ReadonlySet<string>; attached: ReadonlySet<string> }
  | { state: "unknown"; reason: string };

/** `${volumeId}@${nodeName}`: the key of AttachmentFacts.attached. */
export const attachmentKey = (volumeId: string, nodeName: string) => `${volumeId}@${nodeName}`;

/** Everything plan() looks at. Gathered with deadlines by facts.ts; fabricated freely in tests. */
export interface GcFacts {
  now: number;
  policy: NqnPolicy;
  driverName: string;
  kubeletDir: string;
  stateDir: string;
  /** Directories whose files are the file backend's disks (loop devices of files there are ours). */
  ownedFileDirs: readonly string[];
  subsystems: NvmeSubsystem[];
  /** NQNs backing a mount outside the kubelet tree (fed to classifyNqn). */
  systemNqns: ReadonlySet<string>;
  mounts: MountEntry[];
  /** Every block device number the kernel knows ("major:minor"); null when it could not be read. */
  blockDevs: ReadonlySet<string> | null;
  loopDevices: LoopDevice[];
  /** Namespace name (nvmeXnY) → device numbers of its partitions and of what is stacked on it. */
  stackedDevs: ReadonlyMap<string, readonly string[]>;
  /** Loop device name (loopN) → names of devices stacked on it (dm, md…). */
  loopHolders: ReadonlyMap<string, readonly string[]>;
  records: StagingRecord[];
  /** Files in the records directory that are not staging records we can read. */
  unreadableRecords: { path: string; reason: string }[];
  /** Probe results of the kubelet-tree mounts that belong to this driver, by mount point. */
  probes: ReadonlyMap<string, ProbeResult>;
  /** Kubelet CSI mount points (publish, or old-layout staging) whose vol_data.json names this driver. */
  volDataMounts: ReadonlySet<string>;
  backend: BackendFacts;
  referenced: ReferencedFacts;
  /** Absent: not asked (no backend, or gathered without the Kubernetes API). */
  attachments?: AttachmentFacts;
}

export type CandidateKind =
  | "dead-mount"
  | "nvme-subsystem"
  | "orphaned-subsystem"
  | "loop-device"
  | "stale-record"
  | "allowed-host"
  | "backend-disk";

export type Action =
  | { type: "unmount"; mountPoint: string; dev: string }
  | { type: "nvme-disconnect"; nqn: string }
  | { type: "loop-detach"; device: string; backingFile: string }
  | { type: "delete-record"; path: string; volumeId: string; stagedAt: string }
  | { type: "delete-disk"; diskId: string; nqn?: string }
  /** Drops node ids from the disk's publications and, unless it is the export's last one, the host NQN from its allowed hosts. */
  | { type: "drop-allowed-host"; diskId: string; hostNqn: string; nodeIds: string[]; keepHost: boolean };

export interface Candidate {
  kind: CandidateKind;
  /** What it is: mount point, NQN, /dev/loopN, record volume id, disk id. */
  id: string;
  reason: string;
  action: Action;
}

export interface Skipped {
  kind: CandidateKind | "backend";
  id: string;
  reason: string;
}

export interface GcPlan {
  candidates: Candidate[];
  skipped: Skipped[];
}

/** Short imperative text of what --force would do, for the table. */
export function describeAction(a: Action): string {
  switch (a.type) {
    case "unmount":
      return `umount --lazy ${a.mountPoint}`;
    case "nvme-disconnect":
      return `nvme disconnect -n ${a.nqn}`;
    case "loop-detach":
      return `losetup --detach ${a.device}`;
    case "delete-record":
      return `delete ${a.path}`;
    case "delete-disk":
      return `delete backend disk ${a.diskId}`;
    case "drop-allowed-host":
      return a.keepHost
        ? `forget publication ${a.nodeIds.join(", ")} of ${a.diskId} (host stays allowed: the export's only one)`
        : `remove allowed host ${a.hostNqn} from ${a.diskId}`;
  }
}
