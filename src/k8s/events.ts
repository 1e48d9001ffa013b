import { redactText } from "../runtime/redact.ts";
import { errorMessage } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import type { KubeClient, WireEvent } from "./client.ts";

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
}

export interface EventSpec {
  regarding: ObjectRef;
  related?: ObjectRef;
  type: "Normal" | "Warning";
  /** CamelCase, at most 128 characters (events.k8s.io/v1). */
  reason: string;
  /** What was attempted, e.g. the RPC name. */
  action: string;
  note: string;
}

export interface EventRecorder {
  /** Never blocks and never throws: the Event is sent in the background, or dropped by the rate limit. */
  emit(e: EventSpec): void;
  /** Waits until what was emitted so far has been sent (tests, shutdown). */
  flush(): Promise<void>;
}

export interface EventRecorderOptions {
  client: KubeClient;
  log: Logger;
  /** reportingController, e.g. rds.csi.srvlab.io/node. */
  controller: string;
  /** reportingInstance: the node name or the controller's host. */
  instance: string;
  now?: () => number;
  /** Same-key events within this window join one series instead of making new objects. */
  seriesWindowMs?: number;
  /** A series is patched at most this often; counts in between are carried by the next patch. */
  seriesPatchMs?: number;
  /** Per regarding object: at most `burst` Events, then one per `refillMs`. */
  burst?: number;
  refillMs?: number;
  /** Events waiting to be sent beyond this are dropped (a dead API must not grow memory). */
  maxQueued?: number;
}

const NOTE_MAX = 1024;

/**
 * Events as client-go's tools/events broadcaster records them (k8s.io/client-go/tools/events,
 * event_broadcaster.go): events with the same regarding object, reason, action, reporting
 * controller and related object are isomorphic; a repeat within 6 minutes does not create a new
 * object but grows the first one's `series` (count, lastObservedTime). The per-object spam filter
 * is kubelet's (client-go tools/record/events_cache.go: burst 25, one more per 5 minutes). Unlike
 * client-go, which heartbeats a series every 30 minutes, a series is patched at most every
 * `seriesPatchMs` so `kubectl describe` shows the count while it still matters.
 */
export function createEventRecorder(opts: EventRecorderOptions): EventRecorder {
  const now = opts.now ?? Date.now;
  const windowMs = opts.seriesWindowMs ?? 6 * 60_000;
  const patchMs = opts.seriesPatchMs ?? 30_000;
  const burst = opts.burst ?? 25;
  const refillMs = opts.refillMs ?? 5 * 60_000;
  const maxQueued = opts.maxQueued ?? 100;

  interface Series {
    name?: string;
    namespace: string;
    count: number;
    last: number;
    sentCount: number;
    lastPatch: number;
    patchTimer?: ReturnType<typeof setTimeout>;
  }
  const series = new Map<string, Series>();
  const buckets = new Map<string, { tokens: number; at: number }>();
  let queue: Promise<void> = Promise.resolve();
  let queued = 0;
  let dropped = 0;

  const refKey = (r: ObjectRef | undefined) => (r ? `${r.kind}/${r.namespace ?? ""}/${r.name}/${r.uid ?? ""}` : "");
  const keyOf = (e: EventSpec) => [refKey(e.regarding), e.reason, e.action, e.type, refKey(e.related)].join("|");

  function allowed(obj: string): boolean {
    const t = now();
    const b = buckets.get(obj) ?? { tokens: burst, at: t };
    const refill = Math.floor((t - b.at) / refillMs);
    if (refill > 0) {
      b.tokens = Math.min(burst, b.tokens + refill);
      b.at += refill * refillMs;
    }
    buckets.set(obj, b);
    if (b.tokens <= 0) return false;
    b.tokens--;
    return true;
  }

  function enqueue(what: string, work: () => Promise<unknown>) {
    if (queued >= maxQueued) {
      if (dropped++ % 100 === 0)
        opts.log.warn({ dropped }, "Kubernetes Events are being dropped: the API does not keep up");
      return;
    }
    queued++;
    queue = queue
      .then(async () => {
        await work();
      })
      .catch((e) => {
        opts.log.warn({ err: errorMessage(e), event: what }, "could not record a Kubernetes Event");
      })
      .finally(() => {
        queued--;
      });
  }

  const iso = (ms: number) => new Date(ms).toISOString();

  function patchSeries(s: Series, what: string) {
    s.patchTimer = undefined;
    if (!s.name || s.count === s.sentCount) return;
    s.lastPatch = now();
    const count = s.count;
    enqueue(what, async () => {
      await opts.client.patchEventSeries(s.namespace, s.name!, { count, lastObservedTime: iso(s.last) });
      s.sentCount = Math.max(s.sentCount, count);
    });
  }

  return {
    emit(e) {
      const key = keyOf(e);
      const t = now();
      const s = series.get(key);
      if (s && t - s.last < windowMs) {
        s.count++;
        s.last = t;
        const wait = s.lastPatch + patchMs - t;
        if (wait <= 0) patchSeries(s, e.reason);
        else if (!s.patchTimer) {
          s.patchTimer = setTimeout(() => patchSeries(s, e.reason), wait);
          s.patchTimer.unref?.();
        }
        return;
      }
      if (!allowed(refKey(e.regarding))) return;
      // Cluster-scoped objects (PV, Node) get their Events in "default", as client-go does.
      const namespace = e.regarding.namespace || "default";
      const fresh: Series = { namespace, count: 1, last: t, sentCount: 1, lastPatch: t };
      series.set(key, fresh);
      const body: WireEvent = {
        apiVersion: "events.k8s.io/v1",
        kind: "Event",
        metadata: {
          name: `${e.regarding.name}.${(BigInt(t) * 1_000_000n + BigInt(series.size)).toString(16)}`,
          namespace,
        },
        eventTime: new Date(t).toISOString().replace("Z", "000Z"),
        reportingController: opts.controller,
        reportingInstance: opts.instance.slice(0, 128),
        action: e.action.slice(0, 128),
        reason: e.reason.slice(0, 128),
        type: e.type,
        // Notes carry error text; the API server is one more place a secret must not reach.
        note: truncateNote(redactText(e.note)),
        regarding: e.regarding,
        ...(e.related ? { related: e.related } : {}),
      };
      enqueue(e.reason, async () => {
        const made = await opts.client.createEvent(namespace, body);
        fresh.name = made.metadata?.name ?? body.metadata!.name;
        if (fresh.count > fresh.sentCount && !fresh.patchTimer) patchSeries(fresh, e.reason);
      });
    },
    async flush() {
      for (const s of series.values())
        if (s.patchTimer) {
          clearTimeout(s.patchTimer);
          patchSeries(s, "flush");
        }
      let q: Promise<void>;
      do {
        q = queue;
        await q;
      } while (q !== queue);
    },
  };
}

const truncateNote = (note: string) => (note.length > NOTE_MAX ? `${note.slice(0, NOTE_MAX - 1)}…` : note);
