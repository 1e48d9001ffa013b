import { RESET_ANNOTATION, type BreakerRegistry } from "../runtime/breakers.ts";
import { errorMessage } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import { isKubeApiError, isNotFound, type KubeClient } from "./client.ts";
import type { EventRecorder } from "./events.ts";
import type { PvIndex } from "./pv-index.ts";

const [ANNOTATION_KEY, ANNOTATION_VALUE] = RESET_ANNOTATION.split("=") as [string, string];
export { ANNOTATION_KEY };
const VOLUME_KEY = /^volume:(.+)$/;

export interface BreakerResetDeps {
  client: KubeClient;
  breakers: BreakerRegistry;
  pvs: PvIndex;
  log: Logger;
  events?: EventRecorder;
  /** Period of the poll; the API is only asked while some volume breaker is open. */
  pollMs: number;
  /** Called once per reset done by annotation (metrics). */
  onReset?: (volumeId: string, pvName: string) => void;
}

/**
 * The PV-annotation reset: while a volume's breaker is open, its PV is read once per period; when
 * it carries rds.csi.srvlab.io/reset-circuit-breaker=true the breaker is reset and the annotation
 * removed (one-shot). A bounded poll rather than a watch: it costs nothing while every breaker is
 * closed, one GET per open breaker per period otherwise, and a dropped connection needs no resync
 * logic. Also reports a breaker that opened as an Event on its PV. Nothing here throws.
 */
export function startBreakerResetPoll(deps: BreakerResetDeps): { tick(): Promise<void>; stop(): void } {
  /** How many times each key had opened when last seen, so an opening is reported once. */
  const seenOpens = new Map<string, number>();
  let running: Promise<void> | null = null;

  async function checkOne(key: string, volumeId: string, opens: number, lastError: string | undefined) {
    const log = deps.log.child({ breaker: key, volume_id: volumeId });
    const pvName = await deps.pvs.nameOf(volumeId);
    if (!pvName) return;
    if (deps.events && seenOpens.get(key) !== opens) {
      seenOpens.set(key, opens);
      deps.events.emit({
        regarding: { apiVersion: "v1", kind: "PersistentVolume", name: pvName },
        type: "Warning",
        reason: "CircuitBreakerOpen",
        action: "NodeStageVolume",
        note: `circuit breaker ${key} on node is open (last error: ${lastError ?? "unknown"}); to reset: annotate the PV with ${RESET_ANNOTATION}, or run \`rds-csi breaker reset ${key}\` on the node`,
      });
    }
    const pv = await deps.client.getPersistentVolume(pvName);
    const value = pv.metadata?.annotations?.[ANNOTATION_KEY];
    if (value === undefined) return;
    if (value !== ANNOTATION_VALUE) {
      log.warn({ pv: pvName, value }, `PV annotation ${ANNOTATION_KEY} is not "${ANNOTATION_VALUE}"; ignored`);
      return;
    }
    // Only a breaker still open is reset (one RPC may have closed it meanwhile: then nothing to do).
    if (deps.breakers.get(key)?.state !== "closed") deps.breakers.reset(key);
    seenOpens.delete(key);
    log.info({ pv: pvName }, "breaker reset by PV annotation");
    deps.onReset?.(volumeId, pvName);
    try {
      // Pinned to the version read: an annotation set again after our read is not swallowed.
      await deps.client.patchPersistentVolumeAnnotations(
        pvName,
        { [ANNOTATION_KEY]: null },
        pv.metadata?.resourceVersion,
      );
    } catch (e) {
      log.warn(
        { pv: pvName, err: errorMessage(e) },
        `breaker was reset but the annotation could not be removed; remove it by hand (kubectl annotate pv ${pvName} ${ANNOTATION_KEY}-)`,
      );
    }
  }

  async function tick() {
    const open = deps.breakers.list().filter((b) => b.state !== "closed" && VOLUME_KEY.test(b.key));
    for (const k of seenOpens.keys()) if (!open.some((b) => b.key === k)) seenOpens.delete(k);
    for (const b of open) {
      const volumeId = VOLUME_KEY.exec(b.key)![1]!;
      try {
        await checkOne(b.key, volumeId, b.opens, b.lastError);
      } catch (e) {
        // One line per failing period at most: the poll is the backoff.
        const level = isKubeApiError(e) && !isNotFound(e) ? "warn" : "debug";
        deps.log[level](
          { breaker: b.key, err: errorMessage(e) },
          "could not check the PV for a breaker-reset annotation",
        );
      }
    }
  }

  const timer = setInterval(() => {
    if (running) return; // a slow API never stacks polls
    running = tick().finally(() => {
      running = null;
    });
  }, deps.pollMs);
  timer.unref?.();
  return { tick, stop: () => clearInterval(timer) };
}
