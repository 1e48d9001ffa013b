import { unlink } from "node:fs/promises";
import type { Backend } from "../backends/backend.ts";
import { classifyNqn } from "../config/nqn.ts";
import { readMountinfo } from "../mount/mountinfo.ts";
import { withDeadline } from "../runtime/deadline.ts";
import { errorMessage, isDeadlineError } from "../runtime/errors.ts";
import { describeFailure, type ExecResult, type Runner } from "../runtime/exec.ts";
import type { Logger } from "../runtime/log.ts";
import { backendFacts, gatherFacts, type FactDeps } from "./facts.ts";
import { plan } from "./plan.ts";
import { dropAllowedHost } from "./allowed-hosts.ts";
import { describeAction, type AttachmentFacts, type Candidate, type GcFacts, type ReferencedFacts } from "./types.ts";

export type ItemStatus = "done" | "failed" | "timed-out" | "skipped" | "not-run";

export interface ItemResult {
  kind: Candidate["kind"];
  id: string;
  action: string;
  status: ItemStatus;
  detail: string;
  durationMs: number;
}

/** Right before acting: is the item still a candidate in the world as it is now? */
export type Recheck = (c: Candidate) => Promise<{ skip: string } | { ok: true; facts?: GcFacts }>;

export interface ExecuteDeps {
  runner: Runner;
  log: Logger;
  recheck: Recheck;
  /** Deadline of each step (the re-check and the action each get one). */
  stepTimeoutMs: number;
  nvmeBin: string;
  backend?: Backend;
  /** Aborted on SIGTERM: the current step finishes, the rest are reported as not run. */
  stop?: AbortSignal;
  onProgress?: (done: number, total: number, next: Candidate | null) => void;
}

/**
 * Executes a plan in its (already safe) order: unmount → disconnect/detach → records → backend
 * disks. Each item is re-checked first, acted on once with its own deadline, and reported; a
 * failure or timeout never stops the run, and nothing that timed out is tried again.
 */
export async function executePlan(candidates: readonly Candidate[], deps: ExecuteDeps): Promise<ItemResult[]> {
  const results: ItemResult[] = [];
  /** NQNs and backing files whose disconnect/detach did not complete: their disk must stay. */
  const unfinished = new Set<string>();
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i]!;
    const base = { kind: c.kind, id: c.id, action: describeAction(c.action) };
    if (deps.stop?.aborted) {
      results.push({
        ...base,
        status: "not-run",
        detail: "stopped by shutdown signal before this step",
        durationMs: 0,
      });
      continue;
    }
    deps.onProgress?.(i, candidates.length, c);
    const started = performance.now();
    const r = await runItem(c, deps, unfinished);
    const result: ItemResult = { ...base, ...r, durationMs: Math.round(performance.now() - started) };
    if (result.status !== "done") {
      if (c.action.type === "nvme-disconnect") unfinished.add(c.action.nqn);
      if (c.action.type === "loop-detach") unfinished.add(c.action.backingFile);
    }
    deps.log[result.status === "done" ? "info" : "warn"](
      {
        op: "gc",
        kind: c.kind,
        id: c.id,
        status: result.status,
        detail: result.detail,
        duration_ms: result.durationMs,
      },
      "gc step",
    );
    results.push(result);
  }
  deps.onProgress?.(candidates.length, candidates.length, null);
  return results;
}

function fromExec(r: ExecResult): { status: ItemStatus; detail: string } {
  if (r.timedOut) return { status: "timed-out", detail: `${describeFailure(r)}; not retried in this run` };
  if (r.exitCode !== 0) return { status: "failed", detail: describeFailure(r) };
  return { status: "done", detail: "" };
}

async function runItem(
  c: Candidate,
  deps: ExecuteDeps,
  unfinished: ReadonlySet<string>,
): Promise<{ status: ItemStatus; detail: string }> {
  const a = c.action;
  if (a.type === "delete-disk" && a.nqn && unfinished.has(a.nqn)) {
    return { status: "skipped", detail: `the disconnect of ${a.nqn} did not complete in this run` };
  }
  let check: Awaited<ReturnType<Recheck>>;
  try {
    check = await withDeadline(`re-check of ${c.id}`, deps.stepTimeoutMs, () => deps.recheck(c));
  } catch (e) {
    return { status: isDeadlineError(e) ? "timed-out" : "skipped", detail: `re-check failed: ${errorMessage(e)}` };
  }
  if ("skip" in check) return { status: "skipped", detail: `changed since the plan: ${check.skip}` };
  const exec = { timeoutMs: deps.stepTimeoutMs, log: deps.log, logLevel: "info" as const };
  switch (a.type) {
    case "unmount":
      // Lazy: a dead mount cannot be unmounted cleanly, and a plain umount on it would hang.
      return fromExec(await deps.runner("umount", ["--lazy", a.mountPoint], exec));
    case "nvme-disconnect": {
      // The gate once more, on the facts of this very moment.
      if (!check.facts) return { status: "skipped", detail: "no fresh facts to check the NQN against" };
      const verdict = classifyNqn(a.nqn, check.facts.policy, check.facts.systemNqns);
      if (!verdict.managed) return { status: "skipped", detail: `${verdict.reason}: ${verdict.detail}` };
      return fromExec(await deps.runner(deps.nvmeBin, ["disconnect", "-n", a.nqn], exec));
    }
    case "loop-detach":
      return fromExec(await deps.runner("losetup", ["--detach", a.device], exec));
    case "delete-record":
      return step(`deleting ${a.path}`, deps.stepTimeoutMs, () => unlink(a.path));
    case "delete-disk": {
      const backend = deps.backend;
      if (!backend) return { status: "skipped", detail: "no backend" };
      return step(`deleting disk ${a.diskId}`, deps.stepTimeoutMs, (sig) => backend.deleteDisk(a.diskId, sig));
    }
    case "drop-allowed-host": {
      const backend = deps.backend;
      if (!backend) return { status: "skipped", detail: "no backend" };
      return step(`dropping ${a.hostNqn} from ${a.diskId}`, deps.stepTimeoutMs, (sig) =>
        dropAllowedHost(backend, a, sig),
      );
    }
  }
}

async function step(
  what: string,
  ms: number,
  fn: (signal: AbortSignal) => Promise<unknown>,
): Promise<{ status: ItemStatus; detail: string }> {
  try {
    await withDeadline(what, ms, fn);
    return { status: "done", detail: "" };
  } catch (e) {
    return { status: isDeadlineError(e) ? "timed-out" : "failed", detail: errorMessage(e) };
  }
}

/**
 * The re-check used by the mode: a dead mount must still be the same mount; anything else must
 * still be a candidate when the world is planned again (without probes: a mount that was not found
 * dead counts as alive, so nothing under a mount that refused to unmount is ever detached).
 */
export function freshPlanRecheck(
  factDeps: FactDeps,
  referenced: ReferencedFacts,
  attachments?: AttachmentFacts,
): Recheck {
  return async (c) => {
    if (c.action.type === "unmount") {
      const { mountPoint, dev } = c.action;
      const mounts = await readMountinfo({
        runner: factDeps.runner,
        procRoot: factDeps.procRoot,
        timeoutMs: factDeps.timeoutMs,
      });
      const now = mounts.filter((m) => m.mountPoint === mountPoint);
      if (now.length === 0) return { skip: "no longer mounted" };
      if (!now.some((m) => m.dev === dev))
        return { skip: `now a different mount (${now.map((m) => m.dev).join(", ")})` };
      return { ok: true };
    }
    const facts = await gatherFacts(factDeps, { probe: false, listBackend: false, referenced });
    if (c.action.type === "delete-disk" || c.action.type === "drop-allowed-host") {
      const backend = factDeps.backend;
      if (!backend) return { skip: "no backend" };
      const disk = await backend.getDisk(c.action.diskId);
      if (!disk) return { skip: "already gone" };
      facts.backend = await backendFacts(
        backend,
        referenced,
        { slotPrefix: factDeps.slotPrefix, graceMs: factDeps.graceMs, now: facts.now, timeoutMs: factDeps.timeoutMs },
        [disk],
      );
      if (c.action.type === "drop-allowed-host") {
        // Read the cluster again: the volume may have been published to that node since the plan.
        if (!factDeps.attachments) return { skip: "no attachment facts to re-check against" };
        try {
          facts.attachments = await factDeps.attachments();
        } catch (e) {
          return { skip: `could not re-read attachments: ${(e as Error).message}` };
        }
      } else if (attachments) facts.attachments = attachments;
    }
    const fresh = plan(facts);
    const same = fresh.candidates.find(
      (x) => x.kind === c.kind && x.id === c.id && JSON.stringify(x.action) === JSON.stringify(c.action),
    );
    if (same) return { ok: true, facts };
    const other = fresh.candidates.find((x) => x.id === c.id);
    if (other) return { skip: `now a ${other.kind} (${other.reason})` };
    const why = fresh.skipped.find((s) => s.id === c.id)?.reason;
    return { skip: why ?? "no longer present" };
  };
}
