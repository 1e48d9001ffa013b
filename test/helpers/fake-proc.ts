import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** A /proc tree with only what doctor reads: tasks' stat and wchan, meminfo, stat, uptime, our mountinfo. */
export interface FakeTask {
  pid: number;
  comm: string;
  state: string;
  wchan?: string;
  startTicks?: number;
}
export interface FakeProcSpec {
  tasks?: FakeTask[];
  meminfo?: { totalKb: number; availableKb: number; swapTotalKb?: number; swapFreeKb?: number };
  /** The aggregate cpu line's first eight counters: user nice system idle iowait irq softirq steal. */
  cpu?: number[];
  uptimeSeconds?: number;
  /** Mount lines for this process's mountinfo (`<root>/<process.pid>/mountinfo`). */
  mountinfo?: string;
}

export function writeTask(root: string, t: FakeTask) {
  const dir = join(root, String(t.pid));
  mkdirSync(dir, { recursive: true });
  // Fields 3..22 of proc(5) stat: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime
  const fields = [
    t.state,
    1,
    t.pid,
    t.pid,
    0,
    -1,
    4194560,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    20,
    0,
    1,
    0,
    t.startTicks ?? 1000,
    0,
    0,
  ];
  writeFileSync(join(dir, "stat"), `${t.pid} (${t.comm}) ${fields.join(" ")}\n`);
  writeFileSync(join(dir, "wchan"), t.wchan ?? "0");
}

export function writeCpu(root: string, cpu: number[]) {
  writeFileSync(join(root, "stat"), `cpu  ${cpu.join(" ")} 0 0\ncpu0 ${cpu.join(" ")} 0 0\nintr 0\n`);
}

export function writeMeminfo(root: string, m: NonNullable<FakeProcSpec["meminfo"]>) {
  writeFileSync(
    join(root, "meminfo"),
    `MemTotal:       ${m.totalKb} kB\nMemFree:        ${m.availableKb} kB\nMemAvailable:   ${m.availableKb} kB\n` +
      `SwapTotal:      ${m.swapTotalKb ?? 0} kB\nSwapFree:       ${m.swapFreeKb ?? 0} kB\n`,
  );
}

export function makeFakeProc(root: string, spec: FakeProcSpec = {}) {
  mkdirSync(root, { recursive: true });
  for (const t of spec.tasks ?? []) writeTask(root, t);
  writeMeminfo(root, spec.meminfo ?? { totalKb: 16_000_000, availableKb: 8_000_000 });
  writeCpu(root, spec.cpu ?? [100, 0, 100, 1000, 10, 0, 0, 0]);
  writeFileSync(join(root, "uptime"), `${spec.uptimeSeconds ?? 10_000}.00 20000.00\n`);
  mkdirSync(join(root, String(process.pid)), { recursive: true });
  writeFileSync(join(root, String(process.pid), "mountinfo"), spec.mountinfo ?? "");
}

/** A mountinfo line for a real path, so probes of it actually run. */
export const mountLine = (
  id: number,
  mountPoint: string,
  fsType = "ext4",
  source = "/dev/vda1",
  dev = "8:1",
  root = "/",
) =>
  `${id} 1 ${dev} ${root.replace(/ /g, "\\040")} ${mountPoint.replace(/ /g, "\\040")} rw,relatime - ${fsType} ${source} rw\n`;
