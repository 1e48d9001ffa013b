import type { OptionSpec } from "../config/option-spec.ts";
import type { Handlers } from "../csi/handler.ts";
import { DurationMs } from "../config/schemas.ts";
import type { ModeContext } from "../runtime/mode-context.ts";
import { startBreakerResetPoll } from "./breaker-reset.ts";
import type { KubeClient } from "./client.ts";
import { createEventRecorder } from "./events.ts";
import { KUBE_OPTIONS } from "./mode-options.ts";
import { withNodeEvents } from "./node-events.ts";
import { createPvIndex } from "./pv-index.ts";

export const NODE_KUBE_OPTIONS = [
  ...KUBE_OPTIONS,
  {
    name: "breaker-reset-poll",
    type: "string",
    describe: "How often PVs of volumes with an open breaker are checked for the reset annotation",
    default: "10s",
    schema: DurationMs,
  },
] as const satisfies readonly OptionSpec[];

/**
 * The node's Kubernetes side: the PV-annotation breaker reset and Events. `client` comes from
 * kubeClientFor, called before the mode takes its lock so that a bad --kubeconfig changes nothing.
 * Returns the service to serve: wrapped when an API is there, unchanged when not.
 */
export function startNodeKube(
  ctx: ModeContext<{ breakerResetPoll: number; driverName: string }>,
  client: KubeClient | null,
  service: Handlers,
  nodeName: string,
): Handlers {
  if (!client) return service;
  const pollMs = ctx.config.breakerResetPoll;
  const pvs = createPvIndex(client, { listTtlMs: pollMs });
  const events = createEventRecorder({
    client,
    log: ctx.log,
    controller: `${ctx.config.driverName}/node`,
    instance: nodeName,
  });
  const poll = startBreakerResetPoll({
    client,
    breakers: ctx.breakers,
    pvs,
    log: ctx.log,
    events,
    pollMs,
    onReset: (volumeId) => ctx.metrics.breakerAnnotationResets.inc({ key: `volume:${volumeId}` }),
  });
  ctx.shutdown.onClose(() => poll.stop());
  return withNodeEvents(service, { events, pvs, log: ctx.log });
}
