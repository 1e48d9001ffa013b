import { renameSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { hostname } from "node:os";
import { SEVERITY_RANK, type Severity } from "./types.ts";
import type { Report } from "./report.ts";

export const METRIC_PREFIX = "rds_csi_doctor_";

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");

/**
 * Prometheus text exposition of one report. `total_mountpoints` and `dead_mountpoints` keep
 * mount_status_monitor's names so existing alerts work; everything else is prefixed.
 */
export function renderPrometheus(r: Report): string {
  const out: string[] = [];
  const gauge = (
    name: string,
    help: string,
    samples: [labels: Record<string, string> | undefined, value: number][],
  ) => {
    out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} gauge`);
    for (const [labels, value] of samples) {
      const l =
        labels && Object.keys(labels).length
          ? `{${Object.entries(labels)
              .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
              .join(",")}}`
          : "";
      out.push(`${name}${l} ${Number.isFinite(value) ? value : 0}`);
    }
  };
  const dead = r.mounts.dead.length;
  gauge("total_mountpoints", "Mount points checked in the last round", [[undefined, r.mounts.total]]);
  gauge("dead_mountpoints", "Mount points that did not answer their probe within the deadline", [[undefined, dead]]);
  gauge(`${METRIC_PREFIX}total_mountpoints`, "Mount points checked in the last round", [[undefined, r.mounts.total]]);
  gauge(`${METRIC_PREFIX}dead_mountpoints`, "Mount points that did not answer their probe within the deadline", [
    [undefined, dead],
  ]);
  if (dead)
    gauge(
      `${METRIC_PREFIX}dead_mountpoint`,
      "A mount point that did not answer (1 per dead mount)",
      r.mounts.dead.map((d) => [{ path: d.path }, 1]),
    );
  gauge(`${METRIC_PREFIX}status`, "Overall result: 0 healthy, 1 warning, 2 critical", [
    [undefined, SEVERITY_RANK[r.status]],
  ]);
  gauge(`${METRIC_PREFIX}last_run_timestamp_seconds`, "When the last round started", [
    [undefined, Math.floor(Date.parse(r.startedAt) / 1000)],
  ]);
  gauge(`${METRIC_PREFIX}duration_seconds`, "How long the last round took", [[undefined, r.durationMs / 1000]]);

  // One gauge per finding class: the worst severity seen for it (0 ok/info, 1 warning, 2 critical).
  const byClass = new Map<string, { check: string; sev: Severity }>();
  for (const f of r.findings) {
    const cur = byClass.get(f.class);
    if (!cur || SEVERITY_RANK[f.severity] > SEVERITY_RANK[cur.sev])
      byClass.set(f.class, { check: f.check, sev: f.severity });
  }
  for (const [cls, { check, sev }] of [...byClass].sort(([a], [b]) => a.localeCompare(b))) {
    gauge(`${METRIC_PREFIX}${cls}`, `Worst severity of ${cls} findings (check ${check}): 0 ok, 1 warning, 2 critical`, [
      [undefined, SEVERITY_RANK[sev]],
    ]);
  }
  return out.join("\n") + "\n";
}

/** node_exporter's textfile collector may read at any moment: write a temp file beside it and rename. */
export function writeTextfile(path: string, text: string): void {
  // Not ending in .prom, so the collector never picks up a half-written file.
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* never written */
    }
    throw e;
  }
}

/** PUT replaces this node's group on the Pushgateway, so vanished classes do not linger. */
export async function pushMetrics(
  url: string,
  text: string,
  opts: { timeoutMs: number; instance?: string },
): Promise<void> {
  const target = `${url.replace(/\/+$/, "")}/metrics/job/rds_csi_doctor/instance/${encodeURIComponent(opts.instance ?? hostname())}`;
  const res = await fetch(target, {
    method: "PUT",
    body: text,
    headers: { "content-type": "text/plain; version=0.0.4" },
    signal: AbortSignal.timeout(opts.timeoutMs),
  });
  if (!res.ok) throw new Error(`pushgateway ${target} answered HTTP ${res.status}`);
}
