import * as v from "valibot";
import { HOST_NQN_FILE_OPTION, NVME_COMMAND_OPTION } from "../config/options.ts";
import { AbsolutePath, DurationMs, PositiveInt } from "../config/schemas.ts";
import { createProbeRegistry } from "../mount/probe.ts";
import { pushMetrics, writeTextfile } from "../health/prometheus.ts";
import { exitCodeOf, renderTable, type Report } from "../health/report.ts";
import { createChecks, runRound } from "../health/round.ts";
import type { HealthDeps } from "../health/types.ts";
import { sleep } from "../runtime/deadline.ts";
import { errorMessage } from "../runtime/errors.ts";
import type { ConfigOf, OptionSpec } from "../config/option-spec.ts";
import type { COMMON_OPTIONS } from "../config/options.ts";
import type { Mode, ModeContext } from "./types.ts";

const EXIT_CRITICAL = 2;
export const EXIT_EXPORT_FAILED = 3;

const HttpUrl = v.pipe(
  v.string(),
  v.url("must be a URL like http://pushgateway:9091"),
  v.regex(/^https?:\/\//, "must be an http:// or https:// URL"),
);

const OPTIONS = [
  {
    name: "probe-timeout",
    type: "string",
    describe: "How long a mount may take to answer before it is reported dead",
    default: "5s",
    schema: DurationMs,
  },
  {
    name: "probe-concurrency",
    type: "number",
    describe: "Probe children running at once",
    default: 64,
    schema: PositiveInt,
  },
  {
    name: "storm-threshold",
    type: "number",
    describe: "Mount entries per source or target above which it is a mount storm",
    default: 100,
    schema: PositiveInt,
  },
  {
    name: "check-timeout",
    type: "string",
    describe: "Deadline of each check (the mounts check gets at least the probe timeout + 10s)",
    default: "15s",
    schema: DurationMs,
  },
  {
    name: "sample-interval",
    type: "string",
    describe: "Sample length for I/O wait and for confirming D-state processes",
    default: "1s",
    schema: DurationMs,
  },
  {
    name: "kernel-log-window",
    type: "string",
    describe: "How far back kernel log errors count as recent",
    default: "1h",
    schema: DurationMs,
  },
  HOST_NQN_FILE_OPTION,
  NVME_COMMAND_OPTION,
  { name: "json", type: "boolean", describe: "Print the report as JSON", default: false },
  {
    name: "prometheus-textfile",
    type: "string",
    describe: "Write metrics to this file atomically (node_exporter textfile collector)",
    schema: AbsolutePath,
  },
  { name: "pushgateway", type: "string", describe: "Push metrics to this Prometheus Pushgateway URL", schema: HttpUrl },
  {
    name: "watch",
    type: "string",
    describe: "Run rounds forever at this interval (e.g. 30s); logs one line per round and per dead mount",
    schema: DurationMs,
  },
] as const satisfies readonly OptionSpec[];

type DoctorConfig = ConfigOf<[...typeof COMMON_OPTIONS, ...typeof OPTIONS]>;
type DoctorContext = ModeContext<DoctorConfig>;

function depsFrom(ctx: DoctorContext): HealthDeps {
  const c = ctx.config;
  const probeTimeoutMs = c.probeTimeout;
  return {
    runner: ctx.runner,
    log: ctx.log,
    sysfsRoot: c.sysfsRoot,
    procRoot: c.procRoot,
    devRoot: c.devRoot,
    stateDir: c.stateDir,
    kubeletDir: c.kubeletDir,
    ...(c.nqnPrefix ? { nqnPrefix: c.nqnPrefix } : {}),
    protectedNqns: [...c.protectedNqn],
    hostnqnFile: c.hostNqnFile,
    nvmeCommand: c.nvmeCommand,
    probes: createProbeRegistry({ timeoutMs: probeTimeoutMs, concurrency: c.probeConcurrency, log: ctx.log }),
    probeTimeoutMs,
    stormThreshold: c.stormThreshold,
    sampleMs: c.sampleInterval,
    kernelLogWindowMs: c.kernelLogWindow,
  };
}

/** prom-client is loaded only by a doctor that exports or serves metrics. */
const renderReport = async (report: Report) => (await import("../health/report-metrics.ts")).renderReport(report);

/** Exports never change the verdict's severity, but a failed export must not pass silently. */
async function exportReport(ctx: DoctorContext, report: Report): Promise<boolean> {
  const file = ctx.config.prometheusTextfile;
  const gateway = ctx.config.pushgateway;
  if (!file && !gateway) return true;
  const text = await renderReport(report);
  let ok = true;
  if (file) {
    try {
      writeTextfile(file, text);
    } catch (e) {
      ok = false;
      ctx.log.error({ path: file, err: errorMessage(e) }, "could not write the Prometheus textfile");
    }
  }
  if (gateway) {
    try {
      await pushMetrics(gateway, text, {
        timeoutMs: 5000,
        ...(ctx.config.nodeId ? { instance: ctx.config.nodeId } : {}),
      });
    } catch (e) {
      ok = false;
      ctx.log.error({ url: gateway, err: errorMessage(e) }, "could not push to the Pushgateway");
    }
  }
  return ok;
}

function logRound(ctx: DoctorContext, r: Report) {
  const line = `Checked ${r.mounts.total} mounts; ${r.mounts.dead.length} are dead`;
  const problems = r.findings
    .filter((f) => f.severity === "warning" || f.severity === "critical")
    .map((f) => ({ check: f.check, class: f.class, severity: f.severity, message: f.message }));
  ctx.log[r.status === "critical" ? "error" : r.status === "warning" ? "warn" : "info"](
    {
      total_mountpoints: r.mounts.total,
      dead_mountpoints: r.mounts.dead.length,
      status: r.status,
      duration_ms: r.durationMs,
      problems,
    },
    line,
  );
  for (const d of r.mounts.dead)
    ctx.log.error(
      { path: d.path, reason: d.reason, dead_since: new Date(d.sinceMs).toISOString() },
      `Mount failed health-check: ${d.path}`,
    );
}

async function watch(ctx: DoctorContext, deps: HealthDeps, intervalMs: number): Promise<number> {
  const checks = createChecks();
  const checkTimeoutMs = ctx.config.checkTimeout;
  let last: Report | undefined;
  const address = ctx.config.metricsAddress;
  if (address) {
    // The one /metrics server: the last round's gauges, then the process's own metrics.
    const { serveMetrics } = await import("../runtime/metrics.ts");
    const server = serveMetrics(address, {
      render: async () => (last ? await renderReport(last) : "") + (await ctx.metrics.render()),
    });
    ctx.log.info({ address, port: server.port }, "doctor metrics endpoint listening");
    ctx.shutdown.onClose(() => server.stop());
  }
  ctx.shutdown.onClose(() => deps.probes.close());
  // SIGTERM/SIGINT drain the round in flight; a second signal exits at once.
  ctx.shutdown.install();
  const signal = ctx.shutdown.signal;
  while (!signal.aborted) {
    try {
      last = await ctx.shutdown.track("doctor-round", "round", () =>
        runRound(checks, deps, { checkTimeoutMs, signal }),
      );
      logRound(ctx, last);
      await exportReport(ctx, last);
    } catch (e) {
      if (signal.aborted) break;
      ctx.log.error({ err: errorMessage(e) }, "doctor round failed");
    }
    await sleep(intervalMs, signal).catch(() => {});
  }
  // Memoized: the same drain whether a signal or a caller started it.
  return ctx.shutdown.shutdown("doctor watch stopped");
}

export const mode: Mode<DoctorConfig> = {
  command: "doctor",
  logToStderr: true,
  servesMetrics: true,
  describe:
    "Health report of this node: every mount probed without hanging, mount storms, NVMe, kernel, resources, breakers. Exit 0 healthy, 1 warnings, 2 critical, 3 the metrics could not be exported (textfile or Pushgateway)",
  options: OPTIONS,
  async run(ctx) {
    const deps = depsFrom(ctx);
    const interval = ctx.config.watch;
    if (interval !== undefined) {
      if (interval <= 0) {
        process.stderr.write("watch: interval must be greater than 0\n");
        return 2;
      }
      return watch(ctx, deps, interval);
    }
    try {
      const report = await runRound(createChecks(), deps, {
        checkTimeoutMs: ctx.config.checkTimeout,
        signal: ctx.shutdown.signal,
      });
      if (ctx.config.json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
      else process.stdout.write(renderTable(report, Boolean(process.stdout.isTTY) && !process.env.NO_COLOR));
      const exported = await exportReport(ctx, report);
      const code = exitCodeOf(report);
      // A failed export has its own status: a unit that accepts 1 (warnings) must still fail on it.
      if (!exported && code !== EXIT_CRITICAL) return EXIT_EXPORT_FAILED;
      return code;
    } finally {
      // Stuck probe children would otherwise outlive a one-shot run, blocked on their dead mounts.
      deps.probes.close();
    }
  },
};
