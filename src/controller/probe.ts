import type { Backend } from "../backends/backend.ts";
import type { BreakerRegistry } from "../runtime/breakers.ts";
import { errorMessage } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";

export interface ProbeOptions {
  backend: Backend;
  breakers: BreakerRegistry;
  log: Logger;
  /**
   * How long a fresh check may keep Probe waiting before the last known state is reported; counted from
   * the check's start, so only the Probe that starts a slow check waits at all.
   */
  budgetMs: number;
  /** Deadline of one background backend check (the backend's own request deadline applies inside it). */
  checkTimeoutMs: number;
  /** A successful check is trusted this long before Probe starts another. */
  freshMs?: number;
}

export interface ProbeAnswer {
  ready: boolean;
  reason?: string;
}

interface Known {
  ready: boolean;
  reason?: string;
  at: number;
}

/**
 * Readiness for Identity.Probe that never waits on the router longer than its budget. The backend check
 * runs in the background, one at a time; Probe answers with its result when it comes within the budget,
 * else with the last known state and its age. The check goes through the backend breaker like every
 * other call, so once the open period is over the check itself is the half-open trial: readiness comes
 * back by itself in a quiet cluster, where no other RPC would ever try.
 */
export function createControllerProbe(o: ProbeOptions) {
  const key = `backend:${o.backend.address}`;
  const freshMs = o.freshMs ?? 1_000;
  let known: Known | undefined;
  let inFlight: Promise<Known> | undefined;
  let startedAt = 0;

  async function check(): Promise<Known> {
    try {
      await o.backend.probe(AbortSignal.timeout(o.checkTimeoutMs));
      return { ready: true, at: performance.now() };
    } catch (e) {
      return { ready: false, reason: `backend ${o.backend.address}: ${errorMessage(e)}`, at: performance.now() };
    }
  }

  /** Starts a check unless one runs or the last success is fresh. */
  function refresh(): Promise<Known> | undefined {
    if (inFlight) return inFlight;
    if (known?.ready && performance.now() - known.at < freshMs) return undefined;
    startedAt = performance.now();
    inFlight = check().then((k) => {
      if (known?.ready !== k.ready)
        o.log[k.ready ? "info" : "warn"](
          { breaker: key, reason: k.reason },
          `backend check: ${k.ready ? "ready" : "not ready"}`,
        );
      known = k;
      inFlight = undefined;
      return k;
    });
    return inFlight;
  }

  const age = (k: Known) => `${((performance.now() - k.at) / 1000).toFixed(1)} s ago`;

  async function probe(): Promise<ProbeAnswer> {
    // An open breaker is known at once and costs nothing to ask; once its period is over, isOpen is
    // false and the check below is the trial.
    const b = o.breakers.get(key);
    if (b?.state === "open") {
      return {
        ready: false,
        reason: `circuit breaker ${key} is open until ${new Date(b.openUntil!).toISOString()} (last: ${b.lastError ?? "unknown"})`,
      };
    }
    const running = refresh();
    // The budget counts from the check's start: once a check has outlived it, nobody waits for it again.
    const waitMs = Math.max(0, o.budgetMs - (performance.now() - startedAt));
    if (running && waitMs > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const fresh = await Promise.race([
        running,
        new Promise<undefined>((r) => {
          timer = setTimeout(() => r(undefined), waitMs);
        }),
      ]);
      clearTimeout(timer);
      if (fresh) return fresh.ready ? { ready: true } : { ready: false, reason: fresh.reason };
    }
    const waiting = inFlight
      ? `; a backend check has been running for ${((performance.now() - startedAt) / 1000).toFixed(1)} s`
      : "";
    if (!known) return { ready: false, reason: `backend ${o.backend.address}: no check has finished yet${waiting}` };
    return known.ready
      ? { ready: true, reason: `last backend check ok ${age(known)}${waiting}` }
      : { ready: false, reason: `${known.reason} (${age(known)})${waiting}` };
  }

  return {
    probe,
    /** Starts the first check at once (start-up), so that the first Probe has something to report. */
    start: () => {
      void refresh();
    },
    /** The check in flight, for a clean shutdown. */
    settled: () => inFlight ?? Promise.resolve(known),
  };
}
