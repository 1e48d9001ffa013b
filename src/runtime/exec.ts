import { spawn, type ChildProcess } from "node:child_process";
import { DomainError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { redactArgs, redactText } from "./redact.ts";

export interface ExecOptions {
  /** Hard deadline; on expiry the child's whole process group gets SIGKILL. */
  timeoutMs: number;
  signal?: AbortSignal;
  input?: string;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Bytes per stream; output beyond this is dropped and `truncated` set. */
  maxOutputBytes?: number;
  log?: Logger;
  /** Log the start and end at info instead of debug (state-changing commands). */
  logLevel?: "debug" | "info";
}

export interface ExecResult {
  command: string;
  args: string[];
  durationMs: number;
  /** null when killed by a signal or never started. */
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  aborted: boolean;
  /** Set when the program could not be started at all (e.g. ENOENT). */
  spawnError?: string;
  stdout: string;
  stderr: string;
  truncated: boolean;
}

export type Runner = (command: string, args: readonly string[], opts: ExecOptions) => Promise<ExecResult>;

export interface RunnerStats {
  /** Children killed at their deadline that have not been reaped yet (likely D state). */
  stuck(): number;
  stuckPids(): number[];
}

/** How long a killed child gets to be reaped before the caller is released anyway. */
const REAP_GRACE_MS = 500;

export const ok = (r: ExecResult) => r.exitCode === 0;

/**
 * SIGKILL to a child spawned `detached` and to everything it started (its process group): killing
 * only the child leaves grandchildren holding pipes or a dead mount. Falls back to the child alone
 * when the group is gone; a child that has already exited is no error.
 */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    try {
      child.kill("SIGKILL");
    } catch {
      /* gone */
    }
  }
}

/** A command's output was cut at the runner's byte bound: a decision on half a listing is a wrong decision. */
export class TruncatedOutputError extends DomainError {
  constructor(
    readonly result: ExecResult,
    what: string,
  ) {
    super(
      "unavailable",
      `${what}: the output of ${result.command} was longer than the runner keeps and was cut; not deciding on part of it`,
    );
  }
}

/** The whole stdout of a result, for a parser; never a truncated one. */
export function completeStdout(r: ExecResult, what: string): string {
  if (r.truncated) throw new TruncatedOutputError(r, what);
  return r.stdout;
}

/** One line describing a failed result, with secrets scrubbed; for error messages. */
export function describeFailure(r: ExecResult): string {
  const cmd = [r.command, ...redactArgs(r.args)].join(" ");
  if (r.spawnError) return `${cmd}: could not start (${r.spawnError})`;
  if (r.timedOut) return `${cmd}: killed after ${r.durationMs} ms deadline`;
  const why = r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`;
  const tail = redactText((r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")).slice(0, 400);
  return `${cmd}: ${why}${tail ? `: ${tail}` : ""}`;
}

export function createRunner(
  defaults: { log?: Logger; onStuckChange?: (n: number) => void } = {},
): Runner & RunnerStats {
  const stuck = new Set<number>();
  const run = (command: string, args: readonly string[], opts: ExecOptions): Promise<ExecResult> => {
    const log = opts.log ?? defaults.log;
    const max = opts.maxOutputBytes ?? 64 * 1024;
    const started = performance.now();
    const shown = { command, args: redactArgs(args) };
    log?.[opts.logLevel ?? "debug"]({ ...shown, timeout_ms: opts.timeoutMs }, "exec start");

    return new Promise<ExecResult>((resolve) => {
      // Bytes, decoded once at the end: a multi-byte character split across chunks stays intact.
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const size = { out: 0, err: 0 };
      let truncated = false;
      let timedOut = false;
      let aborted = false;
      let settled = false;
      let exited = false;
      const append = (into: Buffer[], key: "out" | "err", chunk: Buffer) => {
        const room = max - size[key];
        if (room <= 0) {
          truncated = true;
          return;
        }
        if (chunk.length > room) {
          truncated = true;
          chunk = chunk.subarray(0, room);
        }
        into.push(chunk);
        size[key] += chunk.length;
      };

      let child: ReturnType<typeof spawn>;
      try {
        // detached: the child leads its own process group, so one kill reaches its grandchildren too.
        child = spawn(command, [...args], {
          detached: true,
          cwd: opts.cwd,
          env: opts.env ? { ...process.env, ...opts.env } : process.env,
          stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        });
      } catch (e) {
        return resolve(finish(null, null, (e as Error).message));
      }

      function finish(code: number | null, sig: string | null, spawnError?: string): ExecResult {
        const stdout = Buffer.concat(out).toString("utf8");
        const stderr = Buffer.concat(err).toString("utf8");
        const r: ExecResult = {
          command,
          args: [...args],
          durationMs: Math.round(performance.now() - started),
          exitCode: code,
          signal: sig,
          timedOut,
          aborted,
          stdout,
          stderr,
          truncated,
          ...(spawnError ? { spawnError } : {}),
        };
        const level = timedOut ? "warn" : (opts.logLevel ?? "debug");
        log?.[level](
          {
            ...shown,
            duration_ms: r.durationMs,
            exit_code: code,
            signal: sig,
            timed_out: timedOut,
            ...(spawnError ? { spawn_error: spawnError } : {}),
            ...(code !== 0 ? { stderr: redactText(stderr.slice(-2000)) } : {}),
          },
          "exec end",
        );
        return r;
      }

      const release = (code: number | null, sig: string | null, spawnError?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        resolve(finish(code, sig, spawnError));
      };

      const expire = () => {
        killGroup(child);
        // A child in D state ignores SIGKILL until the kernel lets go: do not wait for it past a short grace.
        setTimeout(() => {
          if (!exited && child.pid !== undefined) {
            stuck.add(child.pid);
            defaults.onStuckChange?.(stuck.size);
            release(null, "SIGKILL");
          }
        }, REAP_GRACE_MS).unref?.();
      };
      const timer = setTimeout(() => {
        timedOut = true;
        expire();
      }, opts.timeoutMs);
      const onAbort = () => {
        aborted = true;
        expire();
      };
      if (opts.signal?.aborted) onAbort();
      else opts.signal?.addEventListener("abort", onAbort, { once: true });

      child.stdout?.on("data", (c: Buffer) => append(out, "out", c));
      child.stderr?.on("data", (c: Buffer) => append(err, "err", c));
      if (opts.input !== undefined) {
        child.stdin?.on("error", () => {});
        child.stdin?.end(opts.input);
      }
      child.on("error", (e: NodeJS.ErrnoException) => release(null, null, e.code ?? e.message));
      child.on("exit", (code, sig) => {
        exited = true;
        if (child.pid !== undefined && stuck.delete(child.pid)) defaults.onStuckChange?.(stuck.size);
        // Output may still be in flight; 'close' follows once the pipes drain. A grandchild that
        // kept the pipes open must not hold us: give it a moment, then kill the group and go.
        const drain = setTimeout(() => {
          killGroup(child);
          release(code, sig);
        }, 200);
        child.once("close", () => {
          clearTimeout(drain);
          release(code, sig);
        });
      });
    });
  };
  return Object.assign(run, {
    stuck: () => stuck.size,
    stuckPids: () => [...stuck],
  });
}

/**
 * What a helper that runs commands takes from its caller (fs/, mount/): the runner, the log its
 * children report to, the deadline of each child, and the caller's cancel.
 */
export interface CommandContext {
  runner: Runner;
  log?: Logger;
  timeoutMs: number;
  signal?: AbortSignal;
}
