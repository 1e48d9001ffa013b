import type { ProbeRegistry } from "../mount/probe.ts";
import type { MountEntry } from "../mount/mountinfo.ts";
import type { Runner } from "../runtime/exec.ts";
import type { Logger } from "../runtime/log.ts";

export type Severity = "ok" | "info" | "warning" | "critical";

/** One observation. `class` is metric-safe ([a-z_][a-z0-9_]*) and stable, so alerts can key on it. */
export interface Finding {
  check: string;
  severity: Severity;
  class: string;
  message: string;
  details?: unknown;
}

/** What every check may use; roots are swappable so tests can hand in fabricated trees. */
export interface HealthDeps {
  runner: Runner;
  log: Logger;
  sysfsRoot: string;
  procRoot: string;
  devRoot: string;
  stateDir: string;
  kubeletDir: string;
  nqnPrefix?: string;
  protectedNqns: readonly string[];
  hostnqnFile: string;
  nvmeCommand: string;
  probes: ProbeRegistry;
  probeTimeoutMs: number;
  stormThreshold: number;
  /** Sample length for CPU iowait and for confirming D state. */
  sampleMs: number;
  /** How far back kernel log lines count as recent. */
  kernelLogWindowMs: number;
}

/** Facts gathered once per round and shared by checks (mountinfo is read only once). */
export interface RoundFacts {
  mounts?: MountEntry[];
  mountsError?: string;
  /** Filled by the mounts check: what the summary line and the two classic metrics report. */
  mountSummary?: MountSummary;
}

export interface DeadMount {
  path: string;
  reason: string;
  sinceMs: number;
}
export interface MountSummary {
  total: number;
  dead: DeadMount[];
}

export interface Check {
  name: string;
  /** A check that must outlive the common check deadline (probing waits a whole probe deadline). */
  timeoutMs?(deps: HealthDeps, common: number): number;
  run(deps: HealthDeps, facts: RoundFacts, signal: AbortSignal): Promise<Finding[]>;
}

export const SEVERITY_RANK: Record<Severity, number> = { ok: 0, info: 0, warning: 1, critical: 2 };

export const worst = (fs: readonly Finding[]): Severity =>
  fs.reduce<Severity>((w, f) => (SEVERITY_RANK[f.severity] > SEVERITY_RANK[w] ? f.severity : w), "ok");

export const finding = (check: string, severity: Severity, cls: string, message: string, details?: unknown): Finding =>
  details === undefined ? { check, severity, class: cls, message } : { check, severity, class: cls, message, details };
