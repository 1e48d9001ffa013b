/**
 * CI reads one line, "N passed, N failed", that scripts/ci-summary makes from scripts/test's
 * output: every bun run's summary counts, a crash or a run that counted nothing is red, and a
 * control byte in the log (a test name may carry one) does not make grep skip it.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const SCRIPT = join(import.meta.dir, "..", "..", "scripts", "ci-summary");
const dir = mkdtempSync("/tmp/rds-csi-ci-summary-");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function summary(log: string, rc = 0): { line: string; code: number } {
  const file = join(dir, `log-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, log);
  const r = Bun.spawnSync([SCRIPT, file, String(rc)]);
  return { line: r.stdout.toString().trim(), code: r.exitCode };
}

const run = (pass: number, fail: number) => `(pass) a\n\n ${pass} pass\n ${fail} fail\nRan ${pass + fail} tests\n`;

test.each([
  ["host and two VM runs add up", run(884, 0) + run(28, 0) + run(28, 0), 0, "940 passed, 0 failed", 0],
  ["a NUL in a test name is still text", `(pass) IdSchema: pvc\0x\n${run(5, 0)}`, 0, "5 passed, 0 failed", 0],
  ["failures count", run(10, 2) + run(3, 1), 1, "13 passed, 3 failed", 1],
  ["errors count as failures", `${run(4, 0)} 2 errors\n`, 1, "4 passed, 2 failed", 1],
  ["a crash before any summary is red", "Segmentation fault\n", 139, "0 passed, 1 failed", 1],
  ["a green exit that counted nothing is red", "no tests found\n", 0, "0 passed, 1 failed", 1],
  ["a non-zero exit with all passing is red", run(7, 0), 1, "7 passed, 1 failed", 1],
])("%s", (_, log, rc, line, code) => {
  expect(summary(log, rc)).toEqual({ line, code });
});
