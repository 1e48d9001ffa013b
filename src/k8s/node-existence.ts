import { errorMessage } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import { isNotFound, type KubeClient } from "./client.ts";

/** "unknown": the API could not say (unreachable, slow, forbidden); the caller keeps its API-less behaviour. */
export type NodePresence = "exists" | "gone" | "unknown";

export interface NodeExistence {
  check(nodeName: string, signal?: AbortSignal): Promise<NodePresence>;
}

/**
 * Whether a Node object exists, cached: a present node for `ttlMs`, an absent one for a tenth of
 * that (a node being re-registered should not wait long). Concurrent checks of one name share a
 * call. An API that does not answer costs one call of `client`'s deadline per period, never a
 * blocked RPC: the answer is then "unknown".
 */
export function createNodeExistence(
  client: KubeClient,
  opts: { ttlMs: number; log: Logger; now?: () => number },
): NodeExistence {
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { presence: NodePresence; until: number }>();
  const pending = new Map<string, Promise<NodePresence>>();
  let warned = false;
  return {
    check(name, signal) {
      const hit = cache.get(name);
      if (hit && hit.until > now()) return Promise.resolve(hit.presence);
      const inFlight = pending.get(name);
      if (inFlight) return inFlight;
      const p = client
        .getNode(name, signal)
        .then(
          (): NodePresence => "exists",
          (e): NodePresence => {
            if (isNotFound(e)) return "gone";
            if (!warned) {
              warned = true;
              opts.log.warn(
                { node: name, err: errorMessage(e) },
                "cannot ask the Kubernetes API whether nodes exist; publishing without that check (logged once)",
              );
            }
            return "unknown";
          },
        )
        .then((presence) => {
          const ttl = presence === "exists" ? opts.ttlMs : Math.max(1_000, opts.ttlMs / 10);
          cache.set(name, { presence, until: now() + ttl });
          if (presence !== "unknown") warned = false;
          return presence;
        })
        .finally(() => pending.delete(name));
      pending.set(name, p);
      return p;
    },
  };
}
