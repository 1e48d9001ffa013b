import { SEVERITY_RANK, worst, type Finding, type MountSummary, type Severity } from "./types.ts";

export interface Report {
  startedAt: string;
  durationMs: number;
  status: Severity;
  mounts: MountSummary;
  findings: Finding[];
}

/** Exit 0 healthy, 1 warnings, 2 critical. */
export const exitCodeOf = (r: Pick<Report, "findings">) => SEVERITY_RANK[worst(r.findings)];

export function buildReport(findings: Finding[], mounts: MountSummary | undefined, startedAt: number): Report {
  return {
    startedAt: new Date(startedAt).toISOString(),
    durationMs: Date.now() - startedAt,
    status: worst(findings),
    mounts: mounts ?? { total: 0, dead: [] },
    findings,
  };
}

const COLOURS: Record<Severity, string> = {
  ok: "\x1b[32m",
  info: "\x1b[36m",
  warning: "\x1b[33m",
  critical: "\x1b[1;31m",
};

/** Human table; colour only when asked (the caller decides from isTTY and NO_COLOR). */
export function renderTable(r: Report, colour: boolean): string {
  const paint = (s: Severity, text: string) => (colour ? `${COLOURS[s]}${text}\x1b[0m` : text);
  const width = Math.max(5, ...r.findings.map((f) => f.check.length));
  const lines = [`${"SEVERITY".padEnd(9)} ${"CHECK".padEnd(width)} MESSAGE`];
  const ordered = [...r.findings].sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity]);
  for (const f of ordered)
    lines.push(`${paint(f.severity, f.severity.toUpperCase().padEnd(9))} ${f.check.padEnd(width)} ${f.message}`);
  lines.push("", `Checked ${r.mounts.total} mounts; ${r.mounts.dead.length} are dead`);
  for (const d of r.mounts.dead) lines.push(`Mount failed health-check: ${d.path} (${d.reason})`);
  lines.push(`Status: ${paint(r.status, r.status.toUpperCase())} in ${r.durationMs} ms`);
  return lines.join("\n") + "\n";
}
