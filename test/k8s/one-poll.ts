import { startBreakerResetPoll } from "../../src/k8s/breaker-reset.ts";
import type { KubeClient } from "../../src/k8s/client.ts";
import type { EventRecorder } from "../../src/k8s/events.ts";
import { createPvIndex } from "../../src/k8s/pv-index.ts";
import type { BreakerRegistry } from "../../src/runtime/breakers.ts";
import type { Logger } from "../../src/runtime/log.ts";

/** One round of the node's breaker-reset poll, as its timer would run it (PV names found by list). */
export async function pollOnce(
  deps: { client: KubeClient; breakers: BreakerRegistry; log: Logger; events: EventRecorder },
  onReset?: (volumeId: string) => void,
): Promise<void> {
  const poll = startBreakerResetPoll({
    ...deps,
    pvs: createPvIndex(deps.client, { listTtlMs: 1_000 }),
    pollMs: 60_000,
    ...(onReset ? { onReset } : {}),
  });
  try {
    await poll.tick();
  } finally {
    poll.stop();
  }
}
