import {
  BrokenCircuitError, CircuitState, ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen,
  noJitterGenerator, type CircuitBreakerPolicy,
} from "cockatiel";
import { isDomainError, unavailable } from "./errors.ts";
import type { Logger } from "./log.ts";

export type BreakerStateName = "closed" | "open" | "half-open";

export interface BreakerInfo {
  key: string;
  state: BreakerStateName;
  /** Consecutive failures counted since the last success. */
  failures: number;
  /** How many times in a row it has opened; drives the growing open period. */
  opens: number;
  lastError?: string;
  /** Epoch ms when the breaker will let one trial call through. */
  openUntil?: number;
}

export interface BreakerRegistryOptions {
  threshold?: number;
  initialOpenMs?: number;
  maxOpenMs?: number;
  log?: Logger;
  /** Extra text for the "open" error: how an operator resets this key. */
  hint?: (key: string) => string;
  onStateChange?: (key: string, state: BreakerStateName) => void;
}

export interface BreakerRegistry {
  execute<T>(key: string, fn: () => Promise<T>): Promise<T>;
  isOpen(key: string): boolean;
  list(): BreakerInfo[];
  get(key: string): BreakerInfo | undefined;
  reset(key: string): boolean;
}

/**
 * Errors that say "your request was wrong" or "someone else is busy" say nothing about the health
 * of the volume or backend, so they do not count toward opening a breaker.
 */
const NOT_A_HEALTH_SIGNAL = new Set(["invalid-argument", "aborted", "already-exists", "not-found", "out-of-range"]);
/** PV annotation that asks the node to reset a volume's breaker (the Go driver's name). */
export const RESET_ANNOTATION = "rds.csi.srvlab.io/reset-circuit-breaker=true";

/** How an operator resets a key; volume breakers also answer to the PV annotation. */
export function defaultResetHint(key: string): string {
  return key.startsWith("volume:")
    ? `to reset: annotate the PV with ${RESET_ANNOTATION}, or run \`rds-csi breaker reset ${key}\` on this node`
    : `reset it with: rds-csi breaker reset ${key}`;
}

const countsAsFailure = (e: unknown) => !(isDomainError(e) && NOT_A_HEALTH_SIGNAL.has(e.kind));

const stateName = (s: CircuitState): BreakerStateName =>
  s === CircuitState.Closed ? "closed" : s === CircuitState.HalfOpen ? "half-open" : "open";

interface Entry {
  policy: CircuitBreakerPolicy;
  info: BreakerInfo;
}

/** One registry per process; breakers are created lazily per key and replaced on reset. */
export function createBreakerRegistry(opts: BreakerRegistryOptions = {}): BreakerRegistry {
  const threshold = opts.threshold ?? 3;
  const initialOpenMs = opts.initialOpenMs ?? 60_000;
  const maxOpenMs = opts.maxOpenMs ?? 30 * 60_000;
  const entries = new Map<string, Entry>();

  const openPeriod = (opens: number) => Math.min(initialOpenMs * 2 ** Math.max(0, opens - 1), maxOpenMs);

  function create(key: string): Entry {
    const policy = circuitBreaker(handleWhen(countsAsFailure), {
      halfOpenAfter: new ExponentialBackoff({ initialDelay: initialOpenMs, maxDelay: maxOpenMs, exponent: 2, generator: noJitterGenerator }),
      breaker: new ConsecutiveBreaker(threshold),
    });
    const info: BreakerInfo = { key, state: "closed", failures: 0, opens: 0 };
    const entry = { policy, info };
    policy.onFailure(({ reason }) => {
      if ("error" in reason && !countsAsFailure(reason.error)) return;
      info.failures++;
      if ("error" in reason) info.lastError = reason.error instanceof Error ? reason.error.message : String(reason.error);
    });
    policy.onSuccess(() => {
      info.failures = 0;
    });
    policy.onStateChange((s) => {
      if (entries.get(key) !== entry) return;
      const name = stateName(s);
      info.state = name;
      if (name === "open") {
        info.opens++;
        info.openUntil = Date.now() + openPeriod(info.opens);
      } else if (name === "closed") {
        info.opens = 0;
        info.openUntil = undefined;
      }
      opts.log?.[name === "open" ? "warn" : "info"]({ breaker: key, state: name, failures: info.failures, open_until: info.openUntil }, "breaker state change");
      opts.onStateChange?.(key, name);
    });
    entries.set(key, entry);
    return entry;
  }

  const entryFor = (key: string) => entries.get(key) ?? create(key);

  return {
    async execute<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const { policy, info } = entryFor(key);
      try {
        return await policy.execute(fn);
      } catch (e) {
        if (e instanceof BrokenCircuitError) {
          const until = info.openUntil ? new Date(info.openUntil).toISOString() : "later";
          const hint = opts.hint?.(key) ?? defaultResetHint(key);
          throw unavailable(
            `circuit breaker ${key} is open after ${info.failures} consecutive failures (last: ${info.lastError ?? "unknown"}); next attempt allowed at ${until}; ${hint}`,
          );
        }
        throw e;
      }
    },
    isOpen: (key) => {
      const e = entries.get(key);
      return !!e && e.policy.state === CircuitState.Open;
    },
    list: () => [...entries.values()].map((e) => ({ ...e.info })).sort((a, b) => a.key.localeCompare(b.key)),
    get: (key) => {
      const e = entries.get(key);
      return e ? { ...e.info } : undefined;
    },
    reset(key) {
      if (!entries.has(key)) return false;
      entries.delete(key);
      opts.log?.info({ breaker: key }, "breaker reset");
      opts.onStateChange?.(key, "closed");
      return true;
    },
  };
}
