import { createHash } from "node:crypto";

/**
 * Volume and snapshot ids. The Go driver used `pvc-<uuid>` slots and `snap-<uuid>` snapshots; we
 * derive the uuid from the CO's name so that a repeated or concurrent CreateVolume for one name
 * always lands on the same slot, and the backend's slot uniqueness makes a second disk impossible.
 */
export const VOLUME_PREFIX = "pvc-";
export const SNAPSHOT_PREFIX = "snap-";

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const VOLUME_ID = new RegExp(`^pvc-${UUID}$`);
const SNAPSHOT_ID = new RegExp(`^snap-${UUID}$`);

/** Namespace separates our name hashes from any other use of the same names. */
const NAMESPACE = "rds.csi.srvlab.io/";

/** RFC 4122 version-5-shaped uuid from SHA-1 of namespace + kind + name. */
export function nameUuid(kind: "volume" | "snapshot", name: string): string {
  const h = createHash("sha1").update(`${NAMESPACE}${kind}/${name}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

export const volumeIdForName = (name: string) => `${VOLUME_PREFIX}${nameUuid("volume", name)}`;
export const snapshotIdForName = (name: string) => `${SNAPSHOT_PREFIX}${nameUuid("snapshot", name)}`;

/** Accepts Go-driver ids (random uuids) and ours; case-insensitive hex is not accepted on purpose. */
export const isVolumeId = (id: string) => VOLUME_ID.test(id);
export const isSnapshotId = (id: string) => SNAPSHOT_ID.test(id);

/**
 * Subsystem NQN of a volume. The Go driver's managed prefix ends in `pvc-` and its NQNs are
 * `<domain>:<volume id>`, i.e. the prefix followed by the uuid; any other prefix is followed by the
 * whole id. Either way the NQN starts with the managed prefix, so the node's gate accepts it.
 */
export const nqnForVolume = (prefix: string, id: string) =>
  prefix.endsWith(VOLUME_PREFIX) && id.startsWith(VOLUME_PREFIX)
    ? prefix + id.slice(VOLUME_PREFIX.length)
    : prefix + id;
