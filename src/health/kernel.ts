import { closeSync, constants, openSync, readSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { sleep } from "../runtime/deadline.ts";
import { completeStdout } from "../runtime/exec.ts";
import { readAttribute } from "../sysfs/attributes.ts";
import { finding, type Check, type Finding, type HealthDeps } from "./types.ts";

interface TaskState {
  pid: number;
  comm: string;
  state: string;
  startTicks: number;
}

/** /proc/<pid>/stat: the command may hold spaces and parentheses, so split after the last ')'. */
export function parseProcStat(pid: number, text: string): TaskState | undefined {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const rest = text.slice(close + 2).split(" ");
  return { pid, comm: text.slice(open + 1, close), state: rest[0] ?? "?", startTicks: Number(rest[19]) };
}

async function tasksInD(procRoot: string): Promise<TaskState[]> {
  const pids = (await readdir(procRoot)).filter((d) => /^\d+$/.test(d)).map(Number);
  // stat and wchan do not take the target's mm lock, unlike cmdline/environ, so they cannot hang on a D-state task.
  const states = await Promise.all(
    pids.map(async (pid) => {
      const t = await readAttribute(join(procRoot, String(pid), "stat"));
      return t === undefined ? undefined : parseProcStat(pid, t);
    }),
  );
  return states.filter((s): s is TaskState => s?.state === "D");
}

/**
 * Tasks in uninterruptible sleep. Short D states are normal disk waits, so a task counts only when
 * it is still in D after a sample interval; across --watch rounds the first sighting is remembered.
 */
export function createDStateCheck(): Check {
  const firstSeen = new Map<string, number>();
  return {
    name: "d-state",
    async run(deps, _facts, signal) {
      const before = await tasksInD(deps.procRoot);
      const seenAt = Date.now();
      for (const t of before)
        if (!firstSeen.has(`${t.pid}:${t.startTicks}`)) firstSeen.set(`${t.pid}:${t.startTicks}`, seenAt);
      await sleep(deps.sampleMs, signal);
      const after = await tasksInD(deps.procRoot);
      const now = Date.now();
      const keep = new Set(after.map((t) => `${t.pid}:${t.startTicks}`));
      for (const k of firstSeen.keys()) if (!keep.has(k)) firstSeen.delete(k);
      const stuck = await Promise.all(
        after
          .filter((t) => firstSeen.has(`${t.pid}:${t.startTicks}`))
          .map(async (t) => ({
            pid: t.pid,
            comm: t.comm,
            wchan: (await readAttribute(join(deps.procRoot, String(t.pid), "wchan"))) || "?",
            inDStateMs: now - firstSeen.get(`${t.pid}:${t.startTicks}`)!,
          })),
      );
      stuck.sort((a, b) => b.inDStateMs - a.inDStateMs);
      // The kernel's own hung-task report fires at 120 s; by then the task is not coming back on its own.
      const severity = stuck.length === 0 ? "ok" : stuck.some((s) => s.inDStateMs >= 120_000) ? "critical" : "warning";
      return [
        finding(
          "d-state",
          severity,
          "d_state_processes",
          stuck.length
            ? `${stuck.length} processes in D state: ${stuck
                .slice(0, 5)
                .map((s) => `${s.pid} ${s.comm} in ${s.wchan} for ≥${Math.round(s.inDStateMs / 1000)} s`)
                .join(", ")}`
            : "no process stuck in D state",
          stuck.length ? { processes: stuck } : undefined,
        ),
      ];
    },
  };
}

interface KernelRecord {
  priority: number;
  secondsSinceBoot: number;
  message: string;
}

const SUBSYSTEM = /\b(nvme\d*|blk_update_request|I\/O error|EXT4-fs|XFS|device-mapper|dm-\d+|Buffer I\/O)/i;
const TROUBLE = /error|fail|timeout|timed out|abort|reset|corrupt|hung|offline|shutdown/i;
/**
 * What the NVMe/TCP host prints while a controller loses its target and reconnects (measured on
 * Debian's 6.1 kernel in the VM suite, test/vm/doctor.test.ts). They tell of an outage, not of damage:
 * whether a controller is still down is the nvme check's `nvme_paths_not_live`, from sysfs. Status
 * 880 (0x370, host path error) is the host failing a command itself because the path is down, as a
 * disconnect of a reconnecting controller does; the target never saw it.
 */
const RECONNECT =
  /\bnvme\d+: (starting error recovery|Reconnecting in \d+ seconds|Failed reconnect attempt \d+|failed to connect socket: -\d+|Successfully reconnected|Property Set error: 880\b)|: no usable path - requeuing I\/O/;

/** /dev/kmsg records: "prio,seq,usec,flags;message", continuation lines start with a space. */
export function parseKmsg(text: string): KernelRecord[] {
  const out: KernelRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith(" ")) continue;
    const semi = line.indexOf(";");
    if (semi < 0) continue;
    const [pri, , usec] = line.slice(0, semi).split(",");
    out.push({ priority: Number(pri) & 7, secondsSinceBoot: Number(usec) / 1e6, message: line.slice(semi + 1) });
  }
  return out;
}

/** `dmesg -r`: "<prio>[seconds] message". */
export function parseDmesgRaw(text: string): KernelRecord[] {
  const out: KernelRecord[] = [];
  for (const line of text.split("\n")) {
    const m = /^<(\d+)>\[\s*([\d.]+)\]\s?(.*)$/.exec(line);
    if (m) out.push({ priority: Number(m[1]) & 7, secondsSinceBoot: Number(m[2]), message: m[3]! });
  }
  return out;
}

/** Non-blocking: each read returns one record, EAGAIN once the ring buffer is drained. */
function readKmsg(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const chunks: string[] = [];
  const buf = Buffer.alloc(16 * 1024);
  try {
    for (let i = 0; i < 1_000_000; i++) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EPIPE") continue; // the record we were at was overwritten; go on with the next
        if (code === "EAGAIN") break;
        throw e;
      }
      if (n === 0) break;
      chunks.push(buf.toString("utf8", 0, n));
    }
  } finally {
    closeSync(fd);
  }
  return chunks.join("");
}

async function kernelRecords(
  deps: HealthDeps,
  signal: AbortSignal,
): Promise<{ source: string; records: KernelRecord[] }> {
  const kmsg = join(deps.devRoot, "kmsg");
  try {
    return { source: kmsg, records: parseKmsg(readKmsg(kmsg)) };
  } catch {
    const r = await deps.runner("dmesg", ["-r"], { timeoutMs: 3000, signal, maxOutputBytes: 8 * 1024 * 1024 });
    if (r.exitCode !== 0)
      throw new Error(
        `neither ${kmsg} nor dmesg could be read (${r.spawnError ?? (r.timedOut ? "dmesg timed out" : r.stderr.trim())})`,
      );
    return { source: "dmesg", records: parseDmesgRaw(completeStdout(r, "the kernel log")) };
  }
}

export const kernelLogCheck: Check = {
  name: "kernel-log",
  async run(deps, _facts, signal) {
    const [{ source, records }, uptimeText] = await Promise.all([
      kernelRecords(deps, signal),
      readAttribute(join(deps.procRoot, "uptime")),
    ]);
    const uptime = Number(uptimeText?.split(" ")[0]);
    const since = Number.isFinite(uptime) ? uptime - deps.kernelLogWindowMs / 1000 : 0;
    const recent = records.filter((r) => r.secondsSinceBoot >= since && SUBSYSTEM.test(r.message));
    const reconnects = recent.filter((r) => RECONNECT.test(r.message)).length;
    const hits = recent.filter((r) => !RECONNECT.test(r.message) && (r.priority <= 3 || TROUBLE.test(r.message)));
    const windowText = `${Math.round(deps.kernelLogWindowMs / 60_000)} min`;
    const out: Finding[] = [
      finding(
        "kernel-log",
        hits.length ? "warning" : "ok",
        "kernel_log_errors",
        hits.length
          ? `${hits.length} storage errors in the kernel log in the last ${windowText}; latest: ${hits.at(-1)!.message}`
          : `no storage errors in the kernel log in the last ${windowText}`,
        {
          source,
          reconnect_lines: reconnects,
          ...(hits.length
            ? { lines: hits.slice(-20).map((h) => `[${h.secondsSinceBoot.toFixed(3)}] ${h.message}`) }
            : {}),
        },
      ),
    ];
    return out;
  },
};
