/**
 * Doctor's exposition through prom-client. The expected lines are what the hand-written renderer
 * (before prom-client) printed for the same report: names, labels, escaping, order and values are
 * unchanged; prom-client only adds an empty line between metric families, which the format ignores.
 */
import { describe, expect, test } from "bun:test";
import { renderReport } from "../../src/health/report-metrics.ts";
import type { Report } from "../../src/health/report.ts";
import type { Finding } from "../../src/health/types.ts";

const finding = (check: string, severity: Finding["severity"], cls: string): Finding => ({
  check,
  severity,
  class: cls,
  message: "",
});
const report = (over: Partial<Report> = {}): Report =>
  ({
    status: "critical",
    startedAt: "2026-11-22T06:00:00.000Z",
    durationMs: 1234.5,
    mounts: {
      total: 3,
      dead: [
        { path: '/var/lib/kubelet/x "q"\\n', reason: "r", sinceMs: 0 },
        { path: "/b", reason: "r", sinceMs: 0 },
      ],
    },
    findings: [
      finding("nvme", "warning", "nvme_hostnqn"),
      finding("mounts", "critical", "dead_mounts"),
      finding("mounts", "ok", "dead_mounts"),
      finding("resources", "info", "memory"),
    ],
    ...over,
  }) as Report;
const lines = (text: string) => text.split("\n").filter(Boolean);

describe("doctor's exposition", () => {
  test("the same names, labels, escapes, order and values as the hand-written renderer printed", async () => {
    const text = await renderReport(report());
    expect(text.endsWith("\n")).toBe(true);
    expect(lines(text)).toEqual([
      "# HELP total_mountpoints Mount points checked in the last round",
      "# TYPE total_mountpoints gauge",
      "total_mountpoints 3",
      "# HELP dead_mountpoints Mount points that did not answer their probe within the deadline",
      "# TYPE dead_mountpoints gauge",
      "dead_mountpoints 2",
      "# HELP rds_csi_doctor_total_mountpoints Mount points checked in the last round",
      "# TYPE rds_csi_doctor_total_mountpoints gauge",
      "rds_csi_doctor_total_mountpoints 3",
      "# HELP rds_csi_doctor_dead_mountpoints Mount points that did not answer their probe within the deadline",
      "# TYPE rds_csi_doctor_dead_mountpoints gauge",
      "rds_csi_doctor_dead_mountpoints 2",
      "# HELP rds_csi_doctor_dead_mountpoint A mount point that did not answer (1 per dead mount)",
      "# TYPE rds_csi_doctor_dead_mountpoint gauge",
      'rds_csi_doctor_dead_mountpoint{path="/var/lib/kubelet/x \\"q\\"\\\\n"} 1',
      'rds_csi_doctor_dead_mountpoint{path="/b"} 1',
      "# HELP rds_csi_doctor_status Overall result: 0 healthy, 1 warning, 2 critical",
      "# TYPE rds_csi_doctor_status gauge",
      "rds_csi_doctor_status 2",
      "# HELP rds_csi_doctor_last_run_timestamp_seconds When the last round started",
      "# TYPE rds_csi_doctor_last_run_timestamp_seconds gauge",
      "rds_csi_doctor_last_run_timestamp_seconds 1795327200",
      "# HELP rds_csi_doctor_duration_seconds How long the last round took",
      "# TYPE rds_csi_doctor_duration_seconds gauge",
      "rds_csi_doctor_duration_seconds 1.2345",
      "# HELP rds_csi_doctor_dead_mounts Worst severity of dead_mounts findings (check mounts): 0 ok, 1 warning, 2 critical",
      "# TYPE rds_csi_doctor_dead_mounts gauge",
      "rds_csi_doctor_dead_mounts 2",
      "# HELP rds_csi_doctor_memory Worst severity of memory findings (check resources): 0 ok, 1 warning, 2 critical",
      "# TYPE rds_csi_doctor_memory gauge",
      "rds_csi_doctor_memory 0",
      "# HELP rds_csi_doctor_nvme_hostnqn Worst severity of nvme_hostnqn findings (check nvme): 0 ok, 1 warning, 2 critical",
      "# TYPE rds_csi_doctor_nvme_hostnqn gauge",
      "rds_csi_doctor_nvme_hostnqn 1",
    ]);
  });

  test("a healthy report has no per-mount gauge; an unknown figure is 0, not NaN", async () => {
    const text = await renderReport(report({ mounts: { total: 1, dead: [] } as never, durationMs: NaN, findings: [] }));
    expect(text).not.toContain("# TYPE rds_csi_doctor_dead_mountpoint gauge");
    expect(lines(text)).toContain("rds_csi_doctor_duration_seconds 0");
    expect(lines(text)).toContain("dead_mountpoints 0");
  });

  test("a finding class gone from the next report leaves no gauge behind", async () => {
    await renderReport(report());
    const next = await renderReport(report({ findings: [finding("resources", "ok", "memory")] }));
    expect(next).not.toContain("nvme_hostnqn");
    expect(lines(next)).toContain("rds_csi_doctor_memory 0");
  });
});
