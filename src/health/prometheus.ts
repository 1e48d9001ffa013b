import { renameSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { hostname } from "node:os";

/**
 * Where doctor's exposition goes besides its /metrics endpoint; the text itself is rendered by
 * prom-client in report-metrics.ts. No prom-client here: doctor loads it only when it exports.
 */

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
