import * as v from "valibot";
import type { Handlers } from "../csi/handler.ts";
import { errorMessage, isDeadlineError, isDomainError } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import { csiErrorOf } from "../node/outcomes.ts";
import { NqnRefusedError } from "../nvme/nvme-tcp-connector.ts";
import type { EventRecorder, ObjectRef } from "./events.ts";
import type { PvIndex } from "./pv-index.ts";

/**
 * Which node failures an operator should see in `kubectl describe`, not only in the node's log.
 * Recognised by type (the NQN gate's refusal) or by the typed kind plus the wording of the module
 * that refuses (storm guard, the stage path's format refusal, deadlines); test/k8s/client.test.ts
 * feeds the real producers' errors through this so a rewording there fails a test here.
 */
export type NodeEventReason =
  "MountStormRefused" | "FormatRefused" | "SystemVolumeRefused" | "StageDeadlineExceeded" | "UnstageDeadlineExceeded";

export function nodeEventReason(rpc: string, raw: unknown): NodeEventReason | null {
  // A helper's own error (storm refused, command failed) reads as the node service answers it.
  const e = csiErrorOf(raw);
  if (!isDomainError(e)) return null;
  const m = e.message;
  if (
    (e.kind === "resource-exhausted" || e.kind === "unavailable") &&
    /refusing to mount|a mount storm is under way/.test(m)
  )
    return "MountStormRefused";
  if (e.kind === "failed-precondition" && m.includes("refusing to format it")) return "FormatRefused";
  if (e instanceof NqnRefusedError && e.verdict.reason === "backs-system-mount") return "SystemVolumeRefused";
  const late =
    isDeadlineError(e) ||
    e.kind === "deadline-exceeded" ||
    /did not finish within \d+ ms|could not be read within \d+ ms|killed after \d+ ms deadline/.test(m);
  if (late && rpc === "NodeStageVolume") return "StageDeadlineExceeded";
  if (late && rpc === "NodeUnstageVolume") return "UnstageDeadlineExceeded";
  return null;
}

const POD_NAME = "csi.storage.k8s.io/pod.name";
const POD_NAMESPACE = "csi.storage.k8s.io/pod.namespace";
const POD_UID = "csi.storage.k8s.io/pod.uid";

function podOf(ctx: Record<string, string> | undefined): ObjectRef | undefined {
  if (!ctx?.[POD_NAME] || !ctx[POD_NAMESPACE]) return undefined;
  return {
    apiVersion: "v1",
    kind: "Pod",
    name: ctx[POD_NAME],
    namespace: ctx[POD_NAMESPACE],
    ...(ctx[POD_UID] ? { uid: ctx[POD_UID] } : {}),
  };
}

/**
 * The two fields the hooks read, taken from the request before the handler parses it (the server
 * has already bounded its size); a request without them is passed on untouched and reported by
 * the handler itself.
 */
const Hooked = v.object({
  volume_id: v.optional(v.string()),
  volume_context: v.optional(v.record(v.string(), v.string())),
});

/**
 * The node service with two hooks around each RPC and nothing else changed: the PV name of the
 * volume context is remembered (for the breaker-reset poll), and a failure an operator should see
 * becomes an Event on the PV and, when the RPC names one (podInfoOnMount), on the pod. The RPC's
 * answer never waits for the API.
 */
export function withNodeEvents(
  service: Handlers,
  deps: { events: EventRecorder; pvs: PvIndex; log: Logger },
): Handlers {
  const out: Handlers = {};
  for (const [rpc, handler] of Object.entries(service)) {
    out[rpc] = async (request, ctx) => {
      const hooked = v.safeParse(Hooked, request);
      const volumeId = hooked.success ? hooked.output.volume_id || undefined : undefined;
      const volumeContext = hooked.success ? hooked.output.volume_context : undefined;
      if (volumeId) deps.pvs.remember(volumeId, volumeContext);
      try {
        return await handler(request, ctx);
      } catch (e) {
        const reason = volumeId ? nodeEventReason(rpc, e) : null;
        if (reason && volumeId) report(rpc, reason, volumeId, errorMessage(e), podOf(volumeContext));
        throw e;
      }
    };
  }
  function report(rpc: string, reason: NodeEventReason, volumeId: string, note: string, pod: ObjectRef | undefined) {
    void deps.pvs
      .nameOf(volumeId)
      .catch((e) => {
        deps.log.debug({ volume_id: volumeId, err: errorMessage(e) }, "no PV name for an Event");
        return null;
      })
      .then((pvName) => {
        const pv: ObjectRef | undefined = pvName
          ? { apiVersion: "v1", kind: "PersistentVolume", name: pvName }
          : undefined;
        if (pv) deps.events.emit({ regarding: pv, type: "Warning", reason, action: rpc, note });
        if (pod)
          deps.events.emit({
            regarding: pod,
            ...(pv ? { related: pv } : {}),
            type: "Warning",
            reason,
            action: rpc,
            note,
          });
      });
  }
  return out;
}
