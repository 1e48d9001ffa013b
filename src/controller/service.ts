import { createHash } from "node:crypto";
import * as v from "valibot";
import type { Backend, Disk, Snapshot, VolumeParams } from "../backends/backend.ts";
import { isSnapshotId, isVolumeId, snapshotIdForName, volumeIdForName } from "../backends/ids.ts";
import type { Handlers } from "../csi/handler.ts";
import { rpc } from "../csi/handler.ts";
import { IdSchema, Message } from "../csi/requests.ts";
import type { BreakerRegistry } from "../runtime/breakers.ts";
import {
  aborted,
  alreadyExists,
  errorMessage,
  failedPrecondition,
  invalidArgument,
  notFound,
  outOfRange,
} from "../runtime/errors.ts";
import { createKeyLock, type KeyLock, exclusive as exclusiveKey } from "../runtime/key-lock.ts";
import type { Logger } from "../runtime/log.ts";
import type { NodeExistence } from "../k8s/node-existence.ts";
import { PV_NAME_KEY } from "../k8s/pv-index.ts";
import { parseNodeId } from "./node-id.ts";
import { paginate } from "./pagination.ts";
import { createSerializer } from "./serialize.ts";
import { MAX_VOLUME_BYTES, MIN_VOLUME_BYTES, sizeFits, sizeForRange } from "./sizing.ts";
import {
  CapabilitiesSchema,
  CapabilitySchema,
  NameSchema,
  isMultiNode,
  parseParams,
  unsupportedCapability,
  type VolumeCapability,
} from "./validation.ts";

export interface ControllerDeps {
  backend: Backend;
  breakers: BreakerRegistry;
  log: Logger;
  defaults: VolumeParams;
  /** Host of the RouterOS management URL; StorageClasses naming another rdsAddress are refused. */
  managementHost?: string;
  keyLock?: KeyLock;
  /** Node objects, when a Kubernetes API is reachable: publishing to a node that is gone is NOT_FOUND. */
  nodes?: NodeExistence;
  /** Node ids must carry a host NQN (NVMe/TCP exports are restricted to it); without one the node is NOT_FOUND. */
  requireHostNqn?: boolean;
}

const CAPABILITIES = [
  "CREATE_DELETE_VOLUME",
  "PUBLISH_UNPUBLISH_VOLUME",
  "LIST_VOLUMES",
  "GET_CAPACITY",
  "CREATE_DELETE_SNAPSHOT",
  "LIST_SNAPSHOTS",
  "CLONE_VOLUME",
  "EXPAND_VOLUME",
  "LIST_VOLUMES_PUBLISHED_NODES",
  "GET_VOLUME",
  "VOLUME_CONDITION",
  "SINGLE_NODE_MULTI_WRITER",
];

const RangeSchema = v.nullish(
  v.looseObject({ required_bytes: v.optional(v.number()), limit_bytes: v.optional(v.number()) }),
);
const ParamsSchema = v.nullish(v.record(v.string(), v.string()));

const CreateVolumeSchema = Message({
  name: NameSchema("name"),
  capacity_range: RangeSchema,
  volume_capabilities: CapabilitiesSchema,
  parameters: ParamsSchema,
  volume_content_source: v.nullish(
    v.looseObject({
      snapshot: v.nullish(v.looseObject({ snapshot_id: IdSchema })),
      volume: v.nullish(v.looseObject({ volume_id: IdSchema })),
    }),
  ),
});
const VolumeIdOnly = Message({ volume_id: IdSchema });
const PublishSchema = Message({
  volume_id: IdSchema,
  node_id: IdSchema,
  volume_capability: v.nonNullish(CapabilitySchema, "volume_capability is required"),
  readonly: v.optional(v.boolean()),
});
const UnpublishSchema = Message({ volume_id: IdSchema, node_id: v.optional(v.string()) });
const ValidateSchema = Message({
  volume_id: IdSchema,
  volume_capabilities: CapabilitiesSchema,
  parameters: ParamsSchema,
});
const ExpandSchema = Message({
  volume_id: IdSchema,
  capacity_range: v.nonNullish(
    v.looseObject({ required_bytes: v.optional(v.number()), limit_bytes: v.optional(v.number()) }),
    "capacity_range is required",
  ),
  volume_capability: v.nullish(CapabilitySchema),
});
const ListSchema = Message({
  max_entries: v.optional(v.pipe(v.number(), v.minValue(0, "max_entries must not be negative"))),
  starting_token: v.optional(v.string()),
});
const CreateSnapshotSchema = Message({
  name: NameSchema("name"),
  source_volume_id: IdSchema,
  parameters: ParamsSchema,
});
const SnapshotIdOnly = Message({ snapshot_id: IdSchema });
const CapacitySchema = Message({ parameters: ParamsSchema });
const ListSnapshotsSchema = Message({
  max_entries: v.optional(v.pipe(v.number(), v.minValue(0, "max_entries must not be negative"))),
  starting_token: v.optional(v.string()),
  source_volume_id: v.optional(v.string()),
  snapshot_id: v.optional(v.string()),
});

/** What a repeated CreateVolume must match: the parameters and the requested capabilities. */
const digestParams = (p: VolumeParams, caps: readonly VolumeCapability[] = []) =>
  createHash("sha256")
    .update(JSON.stringify(Object.entries(p).sort(([a], [b]) => a.localeCompare(b))))
    .update(JSON.stringify(caps.map(capabilitySignature).sort()))
    .digest("hex")
    .slice(0, 16);

function capabilitySignature(c: VolumeCapability): string {
  const fs = c.access_type === "mount" ? c.mount?.fs_type || "default" : "";
  return `${c.access_type}:${fs}:${c.access_mode.mode}`;
}

const timestamp = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 });

const contentSource = (source: string | undefined) =>
  !source ? null : isSnapshotId(source) ? { snapshot: { snapshot_id: source } } : { volume: { volume_id: source } };

function snapshotMessage(s: Snapshot) {
  return {
    snapshot_id: s.id,
    source_volume_id: s.sourceVolumeId,
    size_bytes: s.sizeBytes,
    creation_time: timestamp(s.createdAt),
    ready_to_use: s.readyToUse,
  };
}

export function controllerHandlers(deps: ControllerDeps): Handlers {
  const { backend } = deps;
  const locks = deps.keyLock ?? createKeyLock();
  const byName = createSerializer();
  const paramCtx = { defaults: deps.defaults, managementHost: deps.managementHost };

  /** One mutating operation per volume at a time; the CO retries an ABORTED call. */
  const exclusive = <T>(id: string, fn: () => Promise<T>): Promise<T> =>
    exclusiveKey(locks, `volume:${id}`, `an operation on ${id} is already in progress`, fn);

  /** pvName: the provisioner's csi.storage.k8s.io/pv/name (--extra-create-metadata), carried for the node's PV lookups. */
  function volumeMessage(d: Disk, params: VolumeParams, pvName?: string) {
    return {
      volume_id: d.id,
      capacity_bytes: d.sizeBytes,
      volume_context: { ...backend.volumeContext(d, params), ...(pvName ? { [PV_NAME_KEY]: pvName } : {}) },
      content_source: contentSource(d.meta.source),
      accessible_topology: [],
    };
  }

  const createVolume = rpc(CreateVolumeSchema, async (r, ctx) => {
    for (const [i, c] of r.volume_capabilities.entries()) {
      const why = unsupportedCapability(c);
      if (why) throw invalidArgument(`volume_capabilities.${i}`, why);
    }
    const params = parseParams(r.parameters, paramCtx);
    const pvName = r.parameters?.[PV_NAME_KEY];
    const src = r.volume_content_source;
    const source = src?.snapshot
      ? { kind: "snapshot" as const, id: src.snapshot.snapshot_id }
      : src?.volume
        ? { kind: "volume" as const, id: src.volume.volume_id }
        : undefined;
    if (src && !source) throw invalidArgument("volume_content_source", "must name a snapshot or a volume");
    const id = volumeIdForName(r.name);
    const digest = digestParams(params, r.volume_capabilities);
    const log = ctx.log.child({ volume_id: id, name: r.name });

    return byName.run(id, () =>
      exclusive(id, async () => {
        const existing = await backend.getDisk(id, ctx.signal);
        if (existing) {
          // A copy of the requested source that has not reached its size yet (still copying, or done but not
          // grown: the router cut the request, or we died in between) is this request's to finish.
          const unfinished =
            !!source &&
            existing.meta.source === source.id &&
            (existing.copying || existing.sizeBytes < (r.capacity_range?.required_bytes ?? 0));
          if (!unfinished && !sizeFits(existing.sizeBytes, r.capacity_range)) {
            throw alreadyExists(
              `volume ${r.name} exists as ${id} with ${existing.sizeBytes} bytes, outside the requested capacity range`,
            );
          }
          if (
            (existing.meta.source ?? "") !== (source?.id ?? "") &&
            (existing.meta.source || existing.meta.paramsDigest)
          ) {
            throw alreadyExists(
              `volume ${r.name} exists as ${id} with content source ${existing.meta.source || "none"}, not ${source?.id || "none"}`,
            );
          }
          if (existing.meta.paramsDigest && existing.meta.paramsDigest !== digest) {
            throw alreadyExists(`volume ${r.name} exists as ${id} with different parameters or capabilities`);
          }
          if (unfinished || existing.copying) {
            // Same request: let the copy go on; the CO retries and picks the volume up when done (and grown).
            const sizeBytes = sizeForRange(r.capacity_range, existing.sizeBytes);
            const done = await backend.createDisk(
              { id, sizeBytes, volumePath: params.volumePath, nvmePort: params.nvmePort, source, meta: existing.meta },
              ctx.signal,
            );
            if (done.copying) throw aborted(`volume ${id} is still being copied from ${source?.id}; retry later`);
            if (!sizeFits(done.sizeBytes, r.capacity_range)) {
              throw alreadyExists(
                `volume ${r.name} exists as ${id} with ${done.sizeBytes} bytes, outside the requested capacity range`,
              );
            }
            return { volume: volumeMessage(done, params, pvName) };
          }
          log.debug("volume exists, returning it");
          return { volume: volumeMessage(existing, params, pvName) };
        }
        let floor = 0;
        if (source?.kind === "snapshot") {
          const snap = isSnapshotId(source.id) ? await backend.getSnapshot(source.id, ctx.signal) : null;
          if (!snap) throw notFound(`snapshot ${source.id} does not exist`);
          if (!snap.readyToUse) throw aborted(`snapshot ${source.id} is not ready yet`);
          floor = snap.sizeBytes;
        } else if (source?.kind === "volume") {
          const vol = isVolumeId(source.id) ? await backend.getDisk(source.id, ctx.signal) : null;
          if (!vol) throw notFound(`source volume ${source.id} does not exist`);
          floor = vol.sizeBytes;
        }
        const sizeBytes = sizeForRange(r.capacity_range, floor);
        const disk = await backend.createDisk(
          {
            id,
            sizeBytes,
            volumePath: params.volumePath,
            nvmePort: params.nvmePort,
            source,
            meta: { ...(source ? { source: source.id } : {}), paramsDigest: digest },
          },
          ctx.signal,
        );
        // A concurrent add for the same name (another controller) may have won with another size.
        if (!disk.copying && !sizeFits(disk.sizeBytes, r.capacity_range)) {
          throw alreadyExists(
            `volume ${r.name} exists as ${id} with ${disk.sizeBytes} bytes (created concurrently), outside the requested capacity range`,
          );
        }
        if (disk.meta.paramsDigest && disk.meta.paramsDigest !== digest) {
          throw alreadyExists(
            `volume ${r.name} exists as ${id} with different parameters or capabilities (created concurrently)`,
          );
        }
        if (disk.copying) throw aborted(`volume ${id} is being copied from ${source?.id}; retry later`);
        log.info({ size_bytes: disk.sizeBytes, source: source?.id }, "volume created");
        return { volume: volumeMessage(disk, params, pvName) };
      }),
    );
  });

  const deleteVolume = rpc(VolumeIdOnly, async ({ volume_id: id }, ctx) => {
    // An id we could never have issued names nothing: success, and nothing reaches the backend.
    if (!isVolumeId(id)) return {};
    return exclusive(id, async () => {
      const disk = await backend.getDisk(id, ctx.signal);
      const users = disk?.meta.publishedTo ?? [];
      if (users.length)
        throw failedPrecondition(`volume ${id} is still published to ${users.join(", ")}; unpublish it first`);
      // Even when the disk is gone: an earlier attempt may have died before removing the backing file.
      await backend.deleteDisk(id, ctx.signal);
      if (disk) ctx.log.info({ volume_id: id }, "volume deleted");
      return {};
    });
  });

  async function getExisting(id: string, signal: AbortSignal): Promise<Disk> {
    const disk = isVolumeId(id) ? await backend.getDisk(id, signal) : null;
    if (!disk) throw notFound(`volume ${id} does not exist`);
    return disk;
  }

  /**
   * Export restriction. RouterOS takes one allowed host NQN per disk: with one publication the
   * export admits only that host; while a multi-node block volume (live migration) is published to
   * several hosts, or to a node that reported no host NQN, the restriction is lifted and put back
   * when the volume is down to one host again.
   */
  function allowedHostsFor(nodeIds: string[]): string[] {
    const hosts = nodeIds.map((n) => parseNodeId(n)).map((p) => (typeof p === "string" ? undefined : p.hostNqn));
    if (hosts.length !== 1 || !hosts[0]) return [];
    return [hosts[0]];
  }

  const publish = rpc(PublishSchema, async (r, ctx) => {
    const cap = r.volume_capability;
    const why = unsupportedCapability(cap);
    if (why) throw invalidArgument("volume_capability", why);
    const node = parseNodeId(r.node_id);
    if (typeof node === "string") throw notFound(`node ${JSON.stringify(r.node_id.slice(0, 80))} not found: ${node}`);
    if (deps.requireHostNqn && !node.hostNqn) {
      throw notFound(
        `node ${JSON.stringify(r.node_id.slice(0, 80))} not found: this driver's node ids are <node-name>/<host-NQN> (NodeGetInfo); give the node an /etc/nvme/hostnqn`,
      );
    }
    if (!isVolumeId(r.volume_id)) throw notFound(`volume ${r.volume_id} does not exist`);
    if (deps.nodes && (await deps.nodes.check(node.nodeName, ctx.signal)) === "gone") {
      throw notFound(`node ${node.nodeName} not found: the cluster has no Node object of that name`);
    }
    return exclusive(r.volume_id, async () => {
      const disk = await getExisting(r.volume_id, ctx.signal);
      const mode = `${cap.access_mode.mode}${r.readonly ? ":ro" : ""}`;
      const current = disk.meta.publishedTo ?? [];
      const publishContext = { publish_context: node.hostNqn ? { hostNqn: node.hostNqn } : {} };
      if (current.includes(r.node_id)) {
        if (disk.meta.publishMode && disk.meta.publishMode !== mode) {
          throw alreadyExists(
            `volume ${r.volume_id} is already published to ${r.node_id} as ${disk.meta.publishMode}, not ${mode}`,
          );
        }
        return publishContext;
      }
      if (current.length) {
        if (!isMultiNode(cap.access_mode.mode) || (disk.meta.publishMode && disk.meta.publishMode !== mode)) {
          throw failedPrecondition(
            `volume ${r.volume_id} is published to ${current.join(", ")} (${disk.meta.publishMode ?? "unknown mode"}); a ${mode} publication to ${node.nodeName} is not allowed`,
          );
        }
      }
      const publishedTo = [...current, r.node_id];
      const hosts = allowedHostsFor(publishedTo);
      if (!node.hostNqn)
        ctx.log.warn({ node_id: r.node_id }, "node reported no host NQN: the export cannot be restricted to it");
      await backend.setPublications(r.volume_id, { ...disk.meta, publishedTo, publishMode: mode }, hosts, ctx.signal);
      ctx.log.info({ node_id: r.node_id, allowed_hosts: hosts }, "volume published");
      return publishContext;
    });
  });

  const unpublish = rpc(UnpublishSchema, async (r, ctx) => {
    if (!isVolumeId(r.volume_id)) return {};
    return exclusive(r.volume_id, async () => {
      const disk = await backend.getDisk(r.volume_id, ctx.signal);
      if (!disk) return {};
      const current = disk.meta.publishedTo ?? [];
      // An empty node_id means "from every node".
      const publishedTo = r.node_id ? current.filter((n) => n !== r.node_id) : [];
      if (publishedTo.length === current.length) return {};
      const { publishMode: _mode, ...rest } = disk.meta;
      const meta = publishedTo.length ? { ...disk.meta, publishedTo } : { ...rest, publishedTo: [] };
      // The last host keeps its restriction: an unpublished volume is better closed to one known host than open to all.
      const hosts = publishedTo.length ? allowedHostsFor(publishedTo) : disk.allowedHosts;
      await backend.setPublications(r.volume_id, meta, hosts, ctx.signal);
      ctx.log.info({ node_id: r.node_id || "(all)", remaining: publishedTo }, "volume unpublished");
      return {};
    });
  });

  const validateCapabilities = rpc(ValidateSchema, async (r, ctx) => {
    await getExisting(r.volume_id, ctx.signal);
    if (r.parameters && Object.keys(r.parameters).length) {
      try {
        parseParams(r.parameters, paramCtx);
      } catch (e) {
        return { message: errorMessage(e) };
      }
    }
    for (const c of r.volume_capabilities) {
      const why = unsupportedCapability(c);
      if (why) return { message: why };
    }
    return {
      confirmed: { volume_context: {}, volume_capabilities: r.volume_capabilities, parameters: r.parameters ?? {} },
    };
  });

  const expand = rpc(ExpandSchema, async (r, ctx) => {
    if (!isVolumeId(r.volume_id)) throw notFound(`volume ${r.volume_id} does not exist`);
    return exclusive(r.volume_id, async () => {
      const disk = await getExisting(r.volume_id, ctx.signal);
      const limit = r.capacity_range.limit_bytes ?? 0;
      if (limit && limit < disk.sizeBytes)
        throw outOfRange(
          `volume ${r.volume_id} has ${disk.sizeBytes} bytes; shrinking to at most ${limit} is not supported`,
        );
      const target = Math.max(disk.sizeBytes, sizeForRange(r.capacity_range));
      const grown = target > disk.sizeBytes ? await backend.growDisk(r.volume_id, target, ctx.signal) : disk;
      const cap = r.volume_capability;
      // Block volumes need nothing on the node; a filesystem (or an unknown capability) must be grown there.
      return { capacity_bytes: grown.sizeBytes, node_expansion_required: cap?.access_type !== "block" };
    });
  });

  const getCapacity = rpc(CapacitySchema, async (r, ctx) => {
    const params = parseParams(r.parameters, paramCtx);
    const c = await backend.capacity(params.volumePath, ctx.signal);
    return {
      available_capacity: c.freeBytes,
      maximum_volume_size: { value: Math.min(MAX_VOLUME_BYTES, c.freeBytes) },
      minimum_volume_size: { value: MIN_VOLUME_BYTES },
    };
  });

  const volumeStatus = (d: Disk) => ({
    published_node_ids: d.meta.publishedTo ?? [],
    volume_condition: { abnormal: d.copying, message: d.copying ? "still being copied" : "ok" },
  });

  const listVolumes = rpc(ListSchema, async (r, ctx) => {
    const disks = await backend.listDisks(ctx.signal);
    const { page, next } = paginate(disks, (d) => d.id, r.max_entries ?? 0, r.starting_token ?? "");
    return {
      entries: page.map((d) => ({
        volume: { volume_id: d.id, capacity_bytes: d.sizeBytes, content_source: contentSource(d.meta.source) },
        status: volumeStatus(d),
      })),
      next_token: next,
    };
  });

  const getVolume = rpc(VolumeIdOnly, async ({ volume_id }, ctx) => {
    const d = await getExisting(volume_id, ctx.signal);
    return {
      volume: { volume_id: d.id, capacity_bytes: d.sizeBytes, content_source: contentSource(d.meta.source) },
      status: volumeStatus(d),
    };
  });

  const createSnapshot = rpc(CreateSnapshotSchema, async (r, ctx) => {
    const id = snapshotIdForName(r.name);
    return byName.run(id, async () => {
      const existing = await backend.getSnapshot(id, ctx.signal);
      if (existing) {
        if (existing.sourceVolumeId && existing.sourceVolumeId !== r.source_volume_id) {
          throw alreadyExists(
            `snapshot ${r.name} exists as ${id} of volume ${existing.sourceVolumeId}, not ${r.source_volume_id}`,
          );
        }
        if (existing.readyToUse) return { snapshot: snapshotMessage(existing) };
      }
      if (!isVolumeId(r.source_volume_id)) throw notFound(`source volume ${r.source_volume_id} does not exist`);
      const vol = await backend.getDisk(r.source_volume_id, ctx.signal);
      if (!vol) throw notFound(`source volume ${r.source_volume_id} does not exist`);
      const snap = await backend.createSnapshot(id, r.source_volume_id, deps.defaults.volumePath, ctx.signal);
      ctx.log.info({ snapshot_id: id, volume_id: r.source_volume_id, ready: snap.readyToUse }, "snapshot created");
      return { snapshot: snapshotMessage(snap) };
    });
  });

  const deleteSnapshot = rpc(SnapshotIdOnly, async ({ snapshot_id }, ctx) => {
    if (!isSnapshotId(snapshot_id)) return {};
    await backend.deleteSnapshot(snapshot_id, ctx.signal);
    return {};
  });

  const listSnapshots = rpc(ListSnapshotsSchema, async (r, ctx) => {
    let snaps: Snapshot[];
    if (r.snapshot_id) {
      const s = isSnapshotId(r.snapshot_id) ? await backend.getSnapshot(r.snapshot_id, ctx.signal) : null;
      snaps = s ? [s] : [];
    } else {
      snaps = await backend.listSnapshots(ctx.signal);
    }
    if (r.source_volume_id) snaps = snaps.filter((s) => s.sourceVolumeId === r.source_volume_id);
    const { page, next } = paginate(snaps, (s) => s.id, r.max_entries ?? 0, r.starting_token ?? "");
    return { entries: page.map((s) => ({ snapshot: snapshotMessage(s) })), next_token: next };
  });

  return {
    CreateVolume: createVolume,
    DeleteVolume: deleteVolume,
    ControllerPublishVolume: publish,
    ControllerUnpublishVolume: unpublish,
    ValidateVolumeCapabilities: validateCapabilities,
    ListVolumes: listVolumes,
    GetCapacity: getCapacity,
    ControllerGetCapabilities: async () => ({ capabilities: CAPABILITIES.map((type) => ({ rpc: { type } })) }),
    CreateSnapshot: createSnapshot,
    DeleteSnapshot: deleteSnapshot,
    ListSnapshots: listSnapshots,
    ControllerExpandVolume: expand,
    ControllerGetVolume: getVolume,
  };
}
