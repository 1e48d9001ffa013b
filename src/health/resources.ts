import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { sleep } from "../runtime/deadline.ts";
import { finding, type Check } from "./types.ts";

export function parseMeminfo(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) m.set(line.slice(0, colon), Number.parseInt(line.slice(colon + 1), 10) * 1024);
  }
  return m;
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

export const memoryCheck: Check = {
  name: "memory",
  async run(deps) {
    const m = parseMeminfo(await readFile(join(deps.procRoot, "meminfo"), "utf8"));
    const total = m.get("MemTotal");
    const avail = m.get("MemAvailable");
    if (!total || avail === undefined) throw new Error("meminfo lacks MemTotal or MemAvailable");
    const swapTotal = m.get("SwapTotal") ?? 0;
    const swapUsed = swapTotal - (m.get("SwapFree") ?? 0);
    const availShare = avail / total;
    const swapShare = swapTotal > 0 ? swapUsed / swapTotal : 0;
    // Out-of-memory is where reclaim stalls turn into dm/nvme hangs (seed ADR-001): below 5 % it is critical.
    return [
      finding(
        "memory",
        availShare < 0.05 ? "critical" : "ok",
        "memory_pressure",
        `MemAvailable ${pct(availShare)} of ${Math.round(total / 2 ** 20)} MiB`,
        { availableBytes: avail, totalBytes: total },
      ),
      finding(
        "memory",
        swapShare > 0.8 ? "warning" : "ok",
        "swap_pressure",
        swapTotal > 0 ? `swap used ${pct(swapShare)}` : "no swap configured",
        { swapUsedBytes: swapUsed, swapTotalBytes: swapTotal },
      ),
    ];
  },
};

/** The aggregate "cpu" line: fields user nice system idle iowait irq softirq steal … */
export function parseCpuLine(text: string): { iowait: number; total: number } {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) throw new Error("/proc/stat has no aggregate cpu line");
  const n = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { iowait: n[4] ?? 0, total: n.reduce((a, b) => a + b, 0) };
}

export const iowaitCheck: Check = {
  name: "iowait",
  async run(deps, _facts, signal) {
    const path = join(deps.procRoot, "stat");
    const a = parseCpuLine(await readFile(path, "utf8"));
    await sleep(deps.sampleMs, signal);
    const b = parseCpuLine(await readFile(path, "utf8"));
    const dt = b.total - a.total;
    const share = dt > 0 ? (b.iowait - a.iowait) / dt : 0;
    return [
      finding("iowait", share > 0.5 ? "warning" : "ok", "iowait", `I/O wait ${pct(share)} over ${deps.sampleMs} ms`, {
        iowaitShare: Number(share.toFixed(4)),
      }),
    ];
  },
};
