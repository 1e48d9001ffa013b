import { isVolumeId } from "../backends/ids.ts";
import { classifyNqn } from "../config/nqn.ts";
import { parseNodeId } from "../controller/node-id.ts";
import type { KubeClient } from "../k8s/client.ts";
import type { Backend } from "../backends/backend.ts";
import {
  attachmentKey,
  type Action,
  type AttachmentFacts,
  type Candidate,
  type GcFacts,
  type Skipped,
} from "./types.ts";

/**
 * Attachment hygiene: an export's allowed host NQN is stale when the node that was published it
 * (its node id `<node>/<host-NQN>` in the disk's publications) has no Node object any more, or no
 * VolumeAttachment references the volume on that node. Only the RouterOS side changes: the
 * publication is forgotten and the host removed from the allowed list, except the export's last
 * allowed host, which stays (an empty list opens the export to any host; see
 * controller/service.ts allowedHostsFor). An allowed host no publication names is the last host an
 * unpublish keeps on purpose, and is left alone.
 */
export function planAllowedHosts(f: GcFacts, acc: { candidates: Candidate[]; skipped: Skipped[] }): void {
  const b = f.backend;
  const a = f.attachments;
  if (b.state !== "ok" || !a) return;
  if (a.state === "unknown") {
    acc.skipped.push({ kind: "allowed-host", id: b.address, reason: `allowed hosts not checked: ${a.reason}` });
    return;
  }
  for (const d of b.disks) {
    if (!isVolumeId(d.id) || d.allowedHosts.length === 0) continue;
    if (d.nqn) {
      const verdict = classifyNqn(d.nqn, f.policy, f.systemNqns);
      if (!verdict.managed) continue;
    }
    const published = d.meta.publishedTo ?? [];
    for (const host of d.allowedHosts) {
      const id = `${d.id} ${host}`;
      const ids = published.filter((n) => {
        const p = parseNodeId(n);
        return typeof p !== "string" && p.hostNqn === host;
      });
      if (ids.length === 0) {
        acc.skipped.push({
          kind: "allowed-host",
          id,
          reason: "no publication names it (the last host an unpublish keeps)",
        });
        continue;
      }
      const stale: string[] = [];
      const why: string[] = [];
      for (const n of ids) {
        const name = (parseNodeId(n) as { nodeName: string }).nodeName;
        if (!a.nodes.has(name)) {
          stale.push(n);
          why.push(`Node ${name} no longer exists`);
        } else if (!a.attached.has(attachmentKey(d.id, name))) {
          stale.push(n);
          why.push(`no VolumeAttachment references ${d.id} on node ${name}`);
        }
      }
      if (stale.length < ids.length) {
        acc.skipped.push({
          kind: "allowed-host",
          id,
          reason: `attached on ${ids.filter((n) => !stale.includes(n)).join(", ")}`,
        });
        continue;
      }
      const keepHost = d.allowedHosts.length === 1;
      acc.candidates.push({
        kind: "allowed-host",
        id,
        reason: why.join("; "),
        action: { type: "drop-allowed-host", diskId: d.id, hostNqn: host, nodeIds: stale, keepHost },
      });
    }
  }
}

/** Nodes, VolumeAttachments and PVs (for their volume handles), as AttachmentFacts. */
export async function attachmentsFromKubernetes(client: KubeClient, signal?: AbortSignal): Promise<AttachmentFacts> {
  const [nodes, vas, pvs] = await Promise.all([
    client.listNodes(signal),
    client.listVolumeAttachments(signal),
    client.listPersistentVolumes(signal),
  ]);
  const handleOf = new Map<string, string>();
  for (const pv of pvs)
    if (pv.metadata?.name && pv.spec?.csi?.volumeHandle) handleOf.set(pv.metadata.name, pv.spec.csi.volumeHandle);
  const attached = new Set<string>();
  for (const va of vas) {
    const pvName = va.spec?.source?.persistentVolumeName;
    const handle = pvName ? handleOf.get(pvName) : undefined;
    if (handle && va.spec?.nodeName) attached.add(attachmentKey(handle, va.spec.nodeName));
  }
  return {
    state: "known",
    source: `Nodes and VolumeAttachments at ${client.access.server}`,
    nodes: new Set(nodes.map((n) => n.metadata?.name ?? "").filter((n) => n !== "")),
    attached,
  };
}

/**
 * --force for an allowed-host candidate, on the disk as it is now: the stale node ids leave the
 * publications, the host leaves the allowed list unless that would empty it (never widens access).
 */
export async function dropAllowedHost(
  backend: Backend,
  a: Extract<Action, { type: "drop-allowed-host" }>,
  signal?: AbortSignal,
): Promise<void> {
  const d = await backend.getDisk(a.diskId, signal);
  if (!d) return;
  const publishedTo = (d.meta.publishedTo ?? []).filter((n) => !a.nodeIds.includes(n));
  const fewer = d.allowedHosts.filter((h) => h !== a.hostNqn);
  const hosts = fewer.length > 0 ? fewer : d.allowedHosts;
  const { publishMode: _mode, ...rest } = d.meta;
  await backend.setPublications(
    d.id,
    publishedTo.length ? { ...d.meta, publishedTo } : { ...rest, publishedTo: [] },
    hosts,
    signal,
  );
}
