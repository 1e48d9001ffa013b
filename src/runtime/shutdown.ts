import { unavailable } from "./errors.ts";
import type { Logger } from "./log.ts";

export interface InFlightOp {
  name: string;
  key: string;
  startedAt: number;
}

export interface ShutdownCoordinator {
  readonly draining: boolean;
  /** Aborted the moment draining begins: long loops (gc --force, doctor --watch) stop at their next step. */
  readonly signal: AbortSignal;
  track<T>(name: string, key: string, fn: () => Promise<T>): Promise<T>;
  inFlight(): InFlightOp[];
  /** Closers run after the drain, newest first (servers registered last close first). */
  onClose(fn: () => Promise<void> | void): void;
  /** Drain and close; resolves with the exit code (0 drained, 1 grace exceeded). */
  shutdown(reason: string): Promise<number>;
  /** SIGTERM/SIGINT start a shutdown; a second signal exits at once. */
  install(exit?: (code: number) => void): void;
}

/** Bound on each closer unless the caller sets one; the NixOS module's stop timeout counts on it. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;

export interface ShutdownOptions {
  graceMs: number;
  log: Logger;
  /** Bound on each closer, so a stuck close cannot hold the exit past the grace. */
  closeTimeoutMs?: number;
}

export function createShutdownCoordinator(opts: ShutdownOptions): ShutdownCoordinator {
  const controller = new AbortController();
  const ops = new Map<number, InFlightOp>();
  const closers: (() => Promise<void> | void)[] = [];
  const idleWaiters = new Set<() => void>();
  let seq = 0;
  let shuttingDown: Promise<number> | undefined;

  const notifyIfIdle = () => {
    if (ops.size === 0) for (const w of idleWaiters) w();
  };

  const waitIdle = (ms: number) =>
    new Promise<boolean>((resolve) => {
      if (ops.size === 0) return resolve(true);
      const done = () => {
        clearTimeout(t);
        idleWaiters.delete(done);
        resolve(true);
      };
      const t = setTimeout(() => {
        idleWaiters.delete(done);
        resolve(false);
      }, ms);
      idleWaiters.add(done);
    });

  const coordinator: ShutdownCoordinator = {
    get draining() {
      return controller.signal.aborted;
    },
    signal: controller.signal,
    async track(name, key, fn) {
      if (controller.signal.aborted) throw unavailable(`shutting down: not accepting new ${name}`);
      const id = ++seq;
      ops.set(id, { name, key, startedAt: Date.now() });
      try {
        return await fn();
      } finally {
        ops.delete(id);
        notifyIfIdle();
      }
    },
    inFlight: () => [...ops.values()],
    onClose: (fn) => void closers.push(fn),
    shutdown(reason) {
      shuttingDown ??= (async () => {
        const started = Date.now();
        opts.log.info({ reason, in_flight: ops.size, grace_ms: opts.graceMs }, "shutdown: draining");
        controller.abort(new Error(`shutdown: ${reason}`));
        const drained = await waitIdle(opts.graceMs);
        if (!drained) {
          for (const op of ops.values()) {
            opts.log.error(
              { op: op.name, key: op.key, age_ms: Date.now() - op.startedAt },
              "shutdown: operation still running at end of grace",
            );
          }
        }
        for (const close of closers.reverse()) {
          const t = opts.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
          await Promise.race([
            Promise.resolve()
              .then(close)
              .catch((e) => opts.log.warn({ err: e }, "shutdown: closer failed")),
            new Promise((r) => setTimeout(r, t).unref?.()),
          ]);
        }
        opts.log.info({ drained, duration_ms: Date.now() - started }, "shutdown: done");
        return drained ? 0 : 1;
      })();
      return shuttingDown;
    },
    install(exit = (code) => process.exit(code)) {
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        signals++;
        if (signals > 1) {
          opts.log.warn({ signal: sig }, "second signal: exiting at once");
          exit(1);
          return;
        }
        void coordinator.shutdown(sig).then(exit);
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
    },
  };
  return coordinator;
}
