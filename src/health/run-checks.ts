import { withDeadline } from "../runtime/deadline.ts";
import { errorMessage, isDeadlineError } from "../runtime/errors.ts";
import { finding, type Check, type Finding, type HealthDeps, type RoundFacts } from "./types.ts";

/**
 * Runs all checks side by side, each under its own deadline. A check that throws or overruns
 * becomes a finding of its own and never hides what the other checks found.
 */
export async function runChecks(
  checks: readonly Check[],
  deps: HealthDeps,
  facts: RoundFacts,
  opts: { checkTimeoutMs: number; signal?: AbortSignal },
): Promise<Finding[]> {
  const results = await Promise.all(
    checks.map(async (c) => {
      const ms = c.timeoutMs?.(deps, opts.checkTimeoutMs) ?? opts.checkTimeoutMs;
      try {
        return await withDeadline(`check ${c.name}`, ms, (signal) => c.run(deps, facts, signal), opts.signal);
      } catch (e) {
        if (isDeadlineError(e)) {
          return [finding(c.name, "warning", "check_timeout", `check ${c.name} did not finish within ${ms} ms`)];
        }
        deps.log.warn({ check: c.name, err: errorMessage(e) }, "health check failed");
        return [finding(c.name, "warning", "check_failed", `check ${c.name} failed: ${errorMessage(e)}`)];
      }
    }),
  );
  return results.flat();
}
