import type { CommandContext } from "../runtime/exec.ts";

export type HealthVerdict =
  | {
      healthy: true;
      warning?: string;
      /** ext4: the filesystem's block count, from e2fsck's summary line. */ blocks?: number;
    }
  | { healthy: false; verdict: string; timedOut: boolean };

/** The checker's last meaningful lines, for an operator-facing message. */
function summarise(text: string): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !/^e2fsck \d|^Phase \d|^\s*-/.test(l));
  return lines.slice(-3).join(" | ").slice(0, 400) || "(no output)";
}

/**
 * Read-only check before a staging's first mount. Nothing here writes to the device: `-n` for
 * both checkers. A filesystem whose journal/log needs replay is passed with a warning, because
 * the mount replays it and a read-only checker cannot tell replayable changes from damage.
 */
export async function checkFilesystem(device: string, fsType: string, o: CommandContext): Promise<HealthVerdict> {
  const [cmd, args] = fsType === "xfs" ? ["xfs_repair", ["-n", device]] : ["fsck.ext4", ["-n", device]];
  const r = await o.runner(cmd, args, { timeoutMs: o.timeoutMs, signal: o.signal, log: o.log, logLevel: "info" });
  const out = `${r.stdout}\n${r.stderr}`;
  if (r.timedOut)
    return { healthy: false, timedOut: true, verdict: `${cmd} -n did not finish within ${o.timeoutMs} ms` };
  if (r.exitCode === 0) {
    // "…: clean, 11/16384 files, 9513/65536 blocks": the stage path's grow check needs no dumpe2fs then.
    const blocks = fsType === "xfs" ? NaN : Number(/\d+\/(\d+) blocks/.exec(r.stdout)?.[1]);
    return Number.isInteger(blocks) && blocks > 0 ? { healthy: true, blocks } : { healthy: true };
  }
  if (fsType === "xfs") {
    if (r.exitCode === 2 && /log/i.test(out))
      return { healthy: true, warning: "xfs log needs replay; the mount will replay it" };
  } else if (r.exitCode === 4 && /skipping journal recovery/i.test(out) && !/Bad magic|corrupt/i.test(out)) {
    return { healthy: true, warning: "ext4 journal needs recovery; the mount will replay it" };
  } else if (r.exitCode === 1) {
    return { healthy: true, warning: "fsck.ext4 reported corrected errors" };
  }
  return { healthy: false, timedOut: false, verdict: `${cmd} -n exit ${r.exitCode ?? r.signal}: ${summarise(out)}` };
}
