/**
 * How a volume's block device reaches this node. The node service only sees this interface;
 * which transport a volume uses comes from its volume_context (see volume-context.ts).
 */

export type Transport = "nvme-tcp" | "loop";

/** What a connector needs to find or attach a volume; recorded at stage time for unstage. */
export interface VolumeTarget {
  volumeId: string;
  transport: Transport;
  /** nvme-tcp */
  nqn?: string;
  address?: string;
  port?: number;
  ctrlLossTmo?: number;
  reconnectDelay?: number;
  keepAliveTmo?: number;
  /** loop: absolute path of the backing file. */
  backingFile?: string;
}

export interface AttachedDevice {
  /** Looked up fresh on every call; never cached across calls (controllers renumber). */
  devicePath: string;
  /** "major:minor" */
  dev: string;
  sizeBytes?: number;
}

export interface Connector {
  /** Idempotent: an already attached volume is success. */
  attach(volume: VolumeTarget, signal?: AbortSignal): Promise<AttachedDevice>;
  /** The device now, or null when the volume is not attached here. */
  find(volume: VolumeTarget, signal?: AbortSignal): Promise<AttachedDevice | null>;
  /** Idempotent: a volume that is not attached is success. */
  detach(volume: VolumeTarget, signal?: AbortSignal): Promise<void>;
  /**
   * Make the kernel re-read the device size after the backend grew it. With `minBytes`, waits
   * (within the connector's own deadline) until the device reports at least that size, for
   * transports whose re-read completes asynchronously.
   */
  refreshSize?(volume: VolumeTarget, signal?: AbortSignal, minBytes?: number): Promise<void>;
  /**
   * Whether the transport under an attached volume can carry I/O now (an NVMe controller that is
   * not `live` cannot). Null when the connector has nothing to say beyond the device existing.
   */
  transportProblem?(volume: VolumeTarget, signal?: AbortSignal): Promise<string | null>;
}

export type Connectors = Record<Transport, Connector>;
