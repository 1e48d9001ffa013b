import { Gauge, Registry } from "prom-client";
import { SEVERITY_RANK, type Severity } from "./types.ts";
import type { Report } from "./report.ts";

/**
 * One report as Prometheus gauges, rendered by prom-client. Loaded (dynamically) only when doctor
 * exports or serves metrics. `total_mountpoints` and `dead_mountpoints` keep mount_status_monitor's
 * names so existing alerts work; everything else is prefixed.
 */
export const METRIC_PREFIX = "rds_csi_doctor_";

/** A fresh registry per report: a finding class that is gone from this round leaves no gauge behind. */
export function reportRegistry(r: Report): Registry {
  const registry = new Registry();
  const gauge = (name: string, help: string, value: number) =>
    new Gauge({ name, help, registers: [registry] }).set(finite(value));

  const dead = r.mounts.dead.length;
  gauge("total_mountpoints", "Mount points checked in the last round", r.mounts.total);
  gauge("dead_mountpoints", "Mount points that did not answer their probe within the deadline", dead);
  gauge(`${METRIC_PREFIX}total_mountpoints`, "Mount points checked in the last round", r.mounts.total);
  gauge(`${METRIC_PREFIX}dead_mountpoints`, "Mount points that did not answer their probe within the deadline", dead);
  if (dead) {
    const each = new Gauge({
      name: `${METRIC_PREFIX}dead_mountpoint`,
      help: "A mount point that did not answer (1 per dead mount)",
      labelNames: ["path"],
      registers: [registry],
    });
    for (const d of r.mounts.dead) each.set({ path: d.path }, 1);
  }
  gauge(`${METRIC_PREFIX}status`, "Overall result: 0 healthy, 1 warning, 2 critical", SEVERITY_RANK[r.status]);
  gauge(
    `${METRIC_PREFIX}last_run_timestamp_seconds`,
    "When the last round started",
    Math.floor(Date.parse(r.startedAt) / 1000),
  );
  gauge(`${METRIC_PREFIX}duration_seconds`, "How long the last round took", r.durationMs / 1000);

  // One gauge per finding class: the worst severity seen for it (0 ok/info, 1 warning, 2 critical).
  const byClass = new Map<string, { check: string; sev: Severity }>();
  for (const f of r.findings) {
    const cur = byClass.get(f.class);
    if (!cur || SEVERITY_RANK[f.severity] > SEVERITY_RANK[cur.sev])
      byClass.set(f.class, { check: f.check, sev: f.severity });
  }
  for (const [cls, { check, sev }] of [...byClass].sort(([a], [b]) => a.localeCompare(b)))
    gauge(
      `${METRIC_PREFIX}${cls}`,
      `Worst severity of ${cls} findings (check ${check}): 0 ok, 1 warning, 2 critical`,
      SEVERITY_RANK[sev],
    );
  return registry;
}

/** The Prometheus text exposition (0.0.4) of one report. */
export const renderReport = (r: Report): Promise<string> => reportRegistry(r).metrics();

/** A value the text format and alerts can use: an unknown figure is 0, as it always was, not NaN. */
const finite = (v: number) => (Number.isFinite(v) ? v : 0);
