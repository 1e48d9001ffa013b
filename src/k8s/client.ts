import type {
  EventsV1Event,
  V1Node,
  V1NodeList,
  V1PersistentVolume,
  V1PersistentVolumeList,
  V1VolumeAttachmentList,
} from "@kubernetes/client-node";
import { withDeadline } from "../runtime/deadline.ts";
import { DomainError, errorMessage, isDeadlineError } from "../runtime/errors.ts";
import type { KubeAccess } from "./access.ts";

/**
 * A thin typed client of the few Kubernetes API calls this driver makes, over fetch. Every call
 * has a deadline; nothing is retried here (callers poll on their own period, so an unreachable API
 * costs one failed call per period, not a storm). Shapes are the official API types
 * (@kubernetes/client-node, type-only: none of its code is in the binary; see
 * scripts/bench-k8s-client.ts for why).
 */

/** Why a call failed: the HTTP status when the API answered, else what went wrong on the way. */
export class KubeApiError extends DomainError {
  override readonly name = "DomainError";
  constructor(
    readonly verb: string,
    readonly path: string,
    readonly status: number | "timeout" | "network",
    detail: string,
  ) {
    super(
      "unavailable",
      `Kubernetes API ${verb} ${path}: ${typeof status === "number" ? `HTTP ${status}` : status}${detail ? `: ${detail}` : ""}`,
    );
  }
}
export const isKubeApiError = (e: unknown): e is KubeApiError => e instanceof KubeApiError;
export const isNotFound = (e: unknown) => isKubeApiError(e) && e.status === 404;

/** Timestamps are RFC 3339 strings on the wire (the official types model them as Date after decoding). */
export type WireEvent = Omit<EventsV1Event, "eventTime" | "series"> & {
  eventTime: string;
  series?: { count: number; lastObservedTime: string };
};

export interface KubeClient {
  readonly access: KubeAccess;
  getPersistentVolume(name: string, signal?: AbortSignal): Promise<V1PersistentVolume>;
  listPersistentVolumes(signal?: AbortSignal): Promise<V1PersistentVolume[]>;
  /**
   * JSON merge patch of annotations (null removes one). With resourceVersion the patch only
   * applies to that version of the object (409 otherwise): optimistic concurrency.
   */
  patchPersistentVolumeAnnotations(
    name: string,
    annotations: Record<string, string | null>,
    resourceVersion?: string,
    signal?: AbortSignal,
  ): Promise<V1PersistentVolume>;
  getNode(name: string, signal?: AbortSignal): Promise<V1Node>;
  listNodes(signal?: AbortSignal): Promise<V1Node[]>;
  listVolumeAttachments(signal?: AbortSignal): Promise<V1VolumeAttachmentList["items"]>;
  createEvent(namespace: string, event: WireEvent, signal?: AbortSignal): Promise<WireEvent>;
  patchEventSeries(
    namespace: string,
    name: string,
    series: { count: number; lastObservedTime: string },
    signal?: AbortSignal,
  ): Promise<WireEvent>;
}

export interface KubeClientOptions {
  access: KubeAccess;
  /** Deadline of one call (including every page of a list). */
  timeoutMs: number;
  /** Page size of list calls (the API's `limit`). */
  pageSize?: number;
}

export function createKubeClient(opts: KubeClientOptions): KubeClient {
  const { access } = opts;
  const pageSize = opts.pageSize ?? 500;

  async function call<T>(
    verb: string,
    path: string,
    init: { body?: unknown; contentType?: string; query?: Record<string, string> } = {},
    signal?: AbortSignal,
  ): Promise<T> {
    const url = new URL(path, access.server);
    for (const [k, v] of Object.entries(init.query ?? {})) url.searchParams.set(k, v);
    try {
      return await withDeadline(
        `Kubernetes API ${verb} ${path}`,
        opts.timeoutMs,
        async (sig) => {
          let res: Response;
          try {
            res = await fetch(url, {
              method: verb,
              headers: {
                authorization: `Bearer ${access.token}`,
                accept: "application/json",
                ...(init.body !== undefined ? { "content-type": init.contentType ?? "application/json" } : {}),
              },
              ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
              signal: sig,
              ...(access.ca ? { tls: { ca: access.ca } } : {}),
            } as RequestInit);
          } catch (e) {
            if (sig.aborted && isDeadlineError(sig.reason)) throw sig.reason;
            throw new KubeApiError(verb, path, "network", errorMessage(e));
          }
          const text = await res.text();
          if (!res.ok) {
            // A Status object's message says what RBAC or validation refused; never echo headers.
            let msg = "";
            try {
              msg = String((JSON.parse(text) as { message?: unknown }).message ?? "");
            } catch {
              msg = text.slice(0, 200);
            }
            throw new KubeApiError(verb, path, res.status, msg);
          }
          try {
            return JSON.parse(text) as T;
          } catch {
            throw new KubeApiError(verb, path, res.status, "answer is not JSON");
          }
        },
        signal,
      );
    } catch (e) {
      if (isDeadlineError(e)) throw new KubeApiError(verb, path, "timeout", `no answer within ${opts.timeoutMs} ms`);
      throw e;
    }
  }

  /** All pages of a list (the API hands a `continue` token per page), within one deadline for the whole list. */
  async function listAll<T>(path: string, signal?: AbortSignal): Promise<T[]> {
    try {
      return await withDeadline(
        `listing ${path}`,
        opts.timeoutMs,
        async (listSignal) => {
          const out: T[] = [];
          let cont: string | undefined;
          for (let page = 0; page < 10_000; page++) {
            const body = await call<{ items?: T[]; metadata?: { _continue?: string; continue?: string } }>(
              "GET",
              path,
              { query: { limit: String(pageSize), ...(cont ? { continue: cont } : {}) } },
              listSignal,
            );
            out.push(...(body.items ?? []));
            cont = body.metadata?.continue || undefined;
            if (!cont) return out;
          }
          throw new KubeApiError("GET", path, "network", "list did not end after 10000 pages");
        },
        signal,
      );
    } catch (e) {
      if (isDeadlineError(e))
        throw new KubeApiError("GET", path, "timeout", `list not complete within ${opts.timeoutMs} ms`);
      throw e;
    }
  }

  const seg = encodeURIComponent;
  return {
    access,
    getPersistentVolume: (name, signal) => call("GET", `/api/v1/persistentvolumes/${seg(name)}`, {}, signal),
    listPersistentVolumes: (signal) => listAll<V1PersistentVolume>("/api/v1/persistentvolumes", signal),
    patchPersistentVolumeAnnotations: (name, annotations, resourceVersion, signal) =>
      call(
        "PATCH",
        `/api/v1/persistentvolumes/${seg(name)}`,
        {
          body: { metadata: { annotations, ...(resourceVersion ? { resourceVersion } : {}) } },
          contentType: "application/merge-patch+json",
        },
        signal,
      ),
    getNode: (name, signal) => call("GET", `/api/v1/nodes/${seg(name)}`, {}, signal),
    listNodes: (signal) => listAll<V1NodeList["items"][number]>("/api/v1/nodes", signal),
    listVolumeAttachments: (signal) =>
      listAll<V1VolumeAttachmentList["items"][number]>("/apis/storage.k8s.io/v1/volumeattachments", signal),
    createEvent: (ns, event, signal) =>
      call("POST", `/apis/events.k8s.io/v1/namespaces/${seg(ns)}/events`, { body: event }, signal),
    patchEventSeries: (ns, name, series, signal) =>
      call(
        "PATCH",
        `/apis/events.k8s.io/v1/namespaces/${seg(ns)}/events/${seg(name)}`,
        {
          body: { series },
          contentType: "application/merge-patch+json",
        },
        signal,
      ),
  };
}

export type { V1Node, V1PersistentVolume, V1PersistentVolumeList };
