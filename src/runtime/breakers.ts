import {
  BrokenCircuitError,
  CircuitState,
  ExponentialBackoff,
  circuitBreaker,
  handleWhen,
  noJitterGenerator,
  type CircuitBreakerPolicy,
  type IBreaker,
} from "cockatiel";
import { isDomainError, unavailable } from "./errors.ts";
import type { Logger } from "./log.ts";

export type BreakerStateName = "closed" | "open" | "half-open";

export interface BreakerInfo {
  key: string;
  state: BreakerStateName;
  /** Consecutive failures since the last success (of the kind of call that fails most). */
  failures: number;
  /** How many times in a row it has opened; drives the growing open period. */
  opens: number;
  lastError?: string;
  /** Epoch ms when the breaker will let one trial call through; only while `open` (never in the past). */
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
  /**
   * Runs `fn` through the breaker of `key`. `kind` names the kind of call (e.g. `GET disk`): a success
   * resets only the count of its own kind, so a healthy endpoint cannot hide a hanging one.
   */
  execute<T>(key: string, fn: () => Promise<T>, kind?: string): Promise<T>;
  /** True while calls are refused without being tried (open, and the open period not over). */
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

/**
 * Consecutive failures counted per kind of call (for the RouterOS client: method and menu, e.g.
 * `GET disk`), so that one endpoint answering does not hide another that hangs: a success resets only
 * its own kind's count, and the breaker opens when any kind reaches the threshold. Callers that pass no
 * kind share one count, which is cockatiel's ConsecutiveBreaker. The counts are updated by the registry
 * the moment a call settles (see `execute`); cockatiel asks `failure()` afterwards and so sees them.
 */
class PerKindConsecutiveBreaker implements IBreaker {
  readonly counts = new Map<string, number>();
  constructor(private readonly threshold: number) {}
  get state(): unknown {
    return Object.fromEntries(this.counts);
  }
  set state(v: unknown) {
    this.counts.clear();
    for (const [k, n] of Object.entries((v ?? {}) as Record<string, number>)) this.counts.set(k, n);
  }
  success(): void {}
  failure(state: CircuitState): boolean {
    return state === CircuitState.HalfOpen || this.highest() >= this.threshold;
  }
  highest(): number {
    let n = 0;
    for (const c of this.counts.values()) n = Math.max(n, c);
    return n;
  }
}

interface Entry {
  policy: CircuitBreakerPolicy;
  counts: PerKindConsecutiveBreaker;
  lastError?: string;
}

/** One registry per process; breakers are created lazily per key and replaced on reset. */
export function createBreakerRegistry(opts: BreakerRegistryOptions = {}): BreakerRegistry {
  const threshold = opts.threshold ?? 3;
  const initialOpenMs = opts.initialOpenMs ?? 60_000;
  const maxOpenMs = opts.maxOpenMs ?? 30 * 60_000;
  const entries = new Map<string, Entry>();

  /** cockatiel's ExponentialBackoff with noJitterGenerator gives exactly this for its attempt number. */
  const openPeriod = (attempt: number) => Math.min(initialOpenMs * 2 ** Math.max(0, attempt - 1), maxOpenMs);

  /**
   * The state as it is, read from cockatiel (the one source of truth): cockatiel stays `Open` until a
   * call arrives after the open period, but from that moment the next call *is* the trial, which is
   * what cockatiel itself calls half-open. Reporting `open` with an `openUntil` in the past was a lie.
   */
  function infoOf(key: string, e: Entry): BreakerInfo {
    const own = (e.policy.toJSON() as { ownState: { value: CircuitState; openedAt?: number; attemptNo?: number } })
      .ownState;
    const info: BreakerInfo = {
      key,
      state: "closed",
      failures: e.counts.highest(),
      opens: 0,
      ...(e.lastError ? { lastError: e.lastError } : {}),
    };
    if (e.policy.state === CircuitState.HalfOpen) return { ...info, state: "half-open", opens: own.attemptNo ?? 1 };
    if (e.policy.state !== CircuitState.Open) return info;
    const opens = own.attemptNo ?? 1;
    const openUntil = (own.openedAt ?? 0) + openPeriod(opens);
    return openUntil > Date.now()
      ? { ...info, state: "open", opens, openUntil }
      : { ...info, state: "half-open", opens };
  }

  function create(key: string): Entry {
    const counts = new PerKindConsecutiveBreaker(threshold);
    const policy = circuitBreaker(handleWhen(countsAsFailure), {
      halfOpenAfter: new ExponentialBackoff({
        initialDelay: initialOpenMs,
        maxDelay: maxOpenMs,
        exponent: 2,
        generator: noJitterGenerator,
      }),
      breaker: counts,
    });
    const entry: Entry = { policy, counts };
    policy.onStateChange((s) => {
      if (entries.get(key) !== entry) return;
      // A trial that succeeded closes the breaker for every kind of call.
      if (s === CircuitState.Closed) counts.counts.clear();
      const info = infoOf(key, entry);
      const name: BreakerStateName =
        s === CircuitState.Closed ? "closed" : s === CircuitState.HalfOpen ? "half-open" : "open";
      opts.log?.[name === "open" ? "warn" : "info"](
        { breaker: key, state: name, failures: info.failures, open_until: info.openUntil },
        "breaker state change",
      );
      opts.onStateChange?.(key, name);
    });
    entries.set(key, entry);
    return entry;
  }

  const entryFor = (key: string) => entries.get(key) ?? create(key);

  return {
    async execute<T>(key: string, fn: () => Promise<T>, kind = ""): Promise<T> {
      const entry = entryFor(key);
      const { policy, counts } = entry;
      try {
        return await policy.execute(async () => {
          try {
            const r = await fn();
            counts.counts.set(kind, 0);
            return r;
          } catch (e) {
            if (countsAsFailure(e)) {
              counts.counts.set(kind, (counts.counts.get(kind) ?? 0) + 1);
              entry.lastError = e instanceof Error ? e.message : String(e);
            }
            throw e;
          }
        });
      } catch (e) {
        if (e instanceof BrokenCircuitError) {
          const info = infoOf(key, entry);
          const until = info.openUntil ? new Date(info.openUntil).toISOString() : "now";
          const hint = opts.hint?.(key) ?? defaultResetHint(key);
          throw unavailable(
            `circuit breaker ${key} is open after ${info.failures} consecutive failures (last: ${entry.lastError ?? "unknown"}); next attempt allowed at ${until}; ${hint}`,
          );
        }
        throw e;
      }
    },
    isOpen: (key) => {
      const e = entries.get(key);
      return !!e && infoOf(key, e).state === "open";
    },
    list: () => [...entries.entries()].map(([k, e]) => infoOf(k, e)).sort((a, b) => a.key.localeCompare(b.key)),
    get: (key) => {
      const e = entries.get(key);
      return e ? infoOf(key, e) : undefined;
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
