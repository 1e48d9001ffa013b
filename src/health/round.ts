import { readMountinfo } from "../mount/mountinfo.ts";
import { errorMessage } from "../runtime/errors.ts";
import { breakersCheck } from "./breakers.ts";
import { controllerBackendCheck } from "./controller-backend.ts";
import { createDStateCheck, kernelLogCheck } from "./kernel.ts";
import { mountsCheck, stormCheck } from "./mounts.ts";
import { nvmeCheck } from "./nvme.ts";
import { buildReport, type Report } from "./report.ts";
import { iowaitCheck, memoryCheck } from "./resources.ts";
import { runChecks } from "./run-checks.ts";
import type { Check, HealthDeps, RoundFacts } from "./types.ts";

/** The checks of one doctor session; stateful ones (D-state sightings) carry over between rounds. */
export const createChecks = (): Check[] => [
  mountsCheck,
  stormCheck,
  nvmeCheck,
  createDStateCheck(),
  kernelLogCheck,
  memoryCheck,
  iowaitCheck,
  breakersCheck,
  controllerBackendCheck,
];

/** One round: read the mount table once (child, deadline), then every check side by side. */
export async function runRound(
  checks: readonly Check[],
  deps: HealthDeps,
  opts: { checkTimeoutMs: number; signal?: AbortSignal },
): Promise<Report> {
  const started = Date.now();
  const facts: RoundFacts = {};
  try {
    facts.mounts = await readMountinfo({
      runner: deps.runner,
      procRoot: deps.procRoot,
      timeoutMs: opts.checkTimeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (e) {
    facts.mountsError = errorMessage(e);
  }
  const findings = await runChecks(checks, deps, facts, opts);
  return buildReport(findings, facts.mountSummary, started);
}
