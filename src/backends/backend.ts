/**
 * The narrow interface the controller drives. Two implementations: RouterOS REST (the RDS) and a
 * directory of sparse files. Implementations throw DomainError kinds (src/runtime/errors.ts):
 * pool full → resource-exhausted, missing source → not-found, unreachable → unavailable.
 */

/** What the controller remembers about a disk on the disk itself (the CO does not resend it). */
export interface DiskMeta {
  /** Content source the disk was created from: a snapshot id or a volume id. */
  source?: string;
  /** Short digest of the StorageClass parameters that shaped the disk, for idempotency checks. */
  paramsDigest?: string;
  /** Node ids (`<node>[/<host-nqn>]`) the disk is published to, in publish order. */
  publishedTo?: string[];
  /** Access mode of the current publications, to refuse an incompatible second publish. */
  publishMode?: string;
  /** Epoch ms when the controller saw this disk's copy complete (a creation time where the backend shows none). */
  copiedAt?: number;
}

export interface Disk {
  /** The slot, `pvc-<uuid>`; also the CSI volume id. */
  id: string;
  sizeBytes: number;
  /** Absolute path of the backing file (on the RDS, or on this host for the file backend). */
  filePath: string;
  /** NVMe subsystem NQN (routeros) — absent for file disks. */
  nqn?: string;
  exported: boolean;
  /** Host NQNs the export is restricted to; empty = not restricted (routeros) / not applicable (file). */
  allowedHosts: string[];
  /** Still being filled by a copy (snapshot restore or clone). */
  copying: boolean;
  createdAt?: number;
  meta: DiskMeta;
}

export interface Snapshot {
  id: string;
  sourceVolumeId: string;
  sizeBytes: number;
  createdAt: number;
  readyToUse: boolean;
}

export interface StrayFile {
  volumeId: string;
  path: string;
  sizeBytes: number;
  createdAt?: number;
}

export interface Capacity {
  totalBytes: number;
  freeBytes: number;
}

export interface CreateDiskRequest {
  id: string;
  sizeBytes: number;
  /** Directory on the backend (routeros volumePath); the file backend ignores it. */
  volumePath: string;
  /** NVMe/TCP port the export listens on (routeros). */
  nvmePort?: number;
  source?: { kind: "snapshot" | "volume"; id: string };
  meta: DiskMeta;
}

export interface Backend {
  readonly kind: "routeros" | "file";
  /** Used in breaker keys (`backend:<address>`) and logs. */
  readonly address: string;
  /**
   * Idempotent by `id`: when the disk exists it is returned as is (the caller checks compatibility).
   * A copy that has not finished within the backend's copy deadline comes back with `copying: true`.
   */
  createDisk(req: CreateDiskRequest, signal?: AbortSignal): Promise<Disk>;
  getDisk(id: string, signal?: AbortSignal): Promise<Disk | null>;
  listDisks(signal?: AbortSignal): Promise<Disk[]>;
  /** Missing disk is success. Removes the backing file too. */
  deleteDisk(id: string, signal?: AbortSignal): Promise<void>;
  /** Grow only; equal size is a no-op. */
  growDisk(id: string, sizeBytes: number, signal?: AbortSignal): Promise<Disk>;
  /** Records publications and restricts the export to `allowedHosts` (empty = unrestricted). */
  setPublications(id: string, meta: DiskMeta, allowedHosts: string[], signal?: AbortSignal): Promise<Disk>;
  capacity(volumePath: string, signal?: AbortSignal): Promise<Capacity>;

  createSnapshot(id: string, sourceVolumeId: string, volumePath: string, signal?: AbortSignal): Promise<Snapshot>;
  getSnapshot(id: string, signal?: AbortSignal): Promise<Snapshot | null>;
  listSnapshots(signal?: AbortSignal): Promise<Snapshot[]>;
  deleteSnapshot(id: string, signal?: AbortSignal): Promise<void>;

  /**
   * Backing files named like a volume (`<pvc-uuid>.img`) that no disk uses: what a delete that died
   * between removing the disk and removing its file leaves behind. Empty where files are the disks.
   */
  strayFiles(signal?: AbortSignal): Promise<StrayFile[]>;
  /** Throws (unavailable) when the backend cannot serve requests. */
  probe(signal?: AbortSignal): Promise<void>;
  /** Start-up: clear what interrupted writes left that nothing else would (temp files). */
  recover?(): Promise<void>;
  /** volume_context handed to the node for this disk. */
  volumeContext(disk: Disk, params: VolumeParams): Record<string, string>;
  close?(): Promise<void>;
}

/** StorageClass parameters after validation, with defaults applied. */
export interface VolumeParams {
  volumePath: string;
  nvmeAddress?: string;
  nvmePort: number;
  ctrlLossTmo: number;
  reconnectDelay: number;
  keepAliveTmo: number;
  fsType: string;
}
