import { sleep } from "../runtime/deadline.ts";
import type { CommandContext } from "../runtime/exec.ts";

/**
 * What is on a device, answered conservatively: "none" only when blkid says nothing is there
 * (exit 2) AND the start of the device is all zeros. Anything unclear is "unknown", and the
 * caller never formats on "unknown" (incident 5: blkid exit 1 right after connect).
 */
export type DeviceContent =
  | {
      state: "filesystem";
      type: string;
      /** blkid's BLOCK_SIZE: ext4's block size, xfs's sector size. */ blockSize?: number;
    }
  | { state: "none" }
  /** blkid found no signature, but the device holds data (a damaged filesystem looks like this). */
  | { state: "data"; reason: string }
  | { state: "unknown"; reason: string };

export interface ProbeFilesystemOptions extends Omit<CommandContext, "timeoutMs"> {
  /** Deadline of each blkid and cmp child (default 10 s). */
  timeoutMs?: number;
  /** blkid answers that are neither "found" nor "nothing" are retried this many times. */
  attempts?: number;
  retryDelayMs?: number;
  /** How much of the device must be zero for it to count as blank. */
  blankCheckBytes?: number;
}

function parseExport(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

async function blkidOnce(device: string, o: ProbeFilesystemOptions): Promise<DeviceContent> {
  const r = await o.runner("blkid", ["-p", "-o", "export", device], {
    timeoutMs: o.timeoutMs ?? 10_000,
    signal: o.signal,
    log: o.log,
  });
  if (r.timedOut) return { state: "unknown", reason: `blkid did not answer within ${o.timeoutMs ?? 10_000} ms` };
  if (r.exitCode === 2) return { state: "none" };
  if (r.exitCode !== 0)
    return {
      state: "unknown",
      reason: `blkid exit ${r.exitCode}${r.signal ? ` (${r.signal})` : ""}: ${(r.stderr || r.stdout).trim().slice(0, 200)}`,
    };
  if (r.truncated) return { state: "unknown", reason: "blkid printed more than the runner keeps" };
  const tags = parseExport(r.stdout);
  if (tags.TYPE) {
    const blockSize = Number(tags.BLOCK_SIZE);
    return {
      state: "filesystem",
      type: tags.TYPE,
      ...(Number.isInteger(blockSize) && blockSize > 0 ? { blockSize } : {}),
    };
  }
  if (tags.PTTYPE) return { state: "data", reason: `partition table (${tags.PTTYPE})` };
  return { state: "data", reason: `unrecognised signature: ${r.stdout.trim().replace(/\n/g, " ").slice(0, 200)}` };
}

/** Compares the head of the device with zeros in a child (`cmp`), so a hung read stays there. */
async function isBlank(device: string, o: ProbeFilesystemOptions): Promise<DeviceContent> {
  const bytes = o.blankCheckBytes ?? 8 * 1024 * 1024;
  const r = await o.runner("cmp", ["-n", String(bytes), device, "/dev/zero"], {
    timeoutMs: o.timeoutMs ?? 10_000,
    signal: o.signal,
    log: o.log,
  });
  if (r.exitCode === 0) return { state: "none" };
  // A device shorter than the window: cmp reaches its end with every byte equal.
  if (r.exitCode === 1 && /EOF on/.test(r.stderr) && !/differ/.test(r.stdout)) return { state: "none" };
  if (r.exitCode === 1 && /differ/.test(r.stdout))
    return {
      state: "data",
      reason: `no filesystem signature, but the first ${bytes} bytes are not blank (${r.stdout.trim()})`,
    };
  return {
    state: "unknown",
    reason: `blank check failed: cmp exit ${r.exitCode}${r.timedOut ? " (deadline)" : ""}: ${r.stderr.trim().slice(0, 200)}`,
  };
}

export async function probeFilesystem(device: string, o: ProbeFilesystemOptions): Promise<DeviceContent> {
  const attempts = Math.max(1, o.attempts ?? 5);
  let last: DeviceContent = { state: "unknown", reason: "not probed" };
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await sleep(o.retryDelayMs ?? 500, o.signal);
    last = await blkidOnce(device, o);
    if (last.state === "unknown") {
      o.log?.warn({ device, attempt: i + 1, reason: last.reason }, "could not tell what is on the device; retrying");
      continue;
    }
    return last.state === "none" ? isBlank(device, o) : last;
  }
  return last;
}
