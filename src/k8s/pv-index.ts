import type { KubeClient } from "./client.ts";

/** volume_context key the external-provisioner adds with --extra-create-metadata (carried by the controller). */
export const PV_NAME_KEY = "csi.storage.k8s.io/pv/name";

/**
 * Which PersistentVolume holds a volume handle. Names come from the volume context (free, exact);
 * for a volume staged before this process started, from one PV list, cached for `listTtlMs` so a
 * dozen open breakers cost one list per period, not a dozen.
 */
export interface PvIndex {
  remember(volumeId: string, volumeContext: Record<string, string> | undefined): void;
  nameOf(volumeId: string, signal?: AbortSignal): Promise<string | null>;
}

export function createPvIndex(client: KubeClient, opts: { listTtlMs: number; now?: () => number }): PvIndex {
  const now = opts.now ?? Date.now;
  const known = new Map<string, string>();
  let listed: { at: number; byHandle: Map<string, string> } | null = null;
  return {
    remember(volumeId, ctx) {
      const name = ctx?.[PV_NAME_KEY];
      if (name) known.set(volumeId, name);
    },
    async nameOf(volumeId, signal) {
      const k = known.get(volumeId);
      if (k) return k;
      if (!listed || now() - listed.at > opts.listTtlMs) {
        const byHandle = new Map<string, string>();
        for (const pv of await client.listPersistentVolumes(signal)) {
          const h = pv.spec?.csi?.volumeHandle;
          if (h && pv.metadata?.name) byHandle.set(h, pv.metadata.name);
        }
        listed = { at: now(), byHandle };
      }
      return listed.byHandle.get(volumeId) ?? null;
    },
  };
}
