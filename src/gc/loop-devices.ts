import { DeadlineError, errorMessage } from "../runtime/errors.ts";
import { CommandFailedError } from "../runtime/command-failed.ts";
import { completeStdout, ok, type Runner } from "../runtime/exec.ts";
import type { LoopDevice } from "./types.ts";

const DELETED = " (deleted)";

/** `losetup -J -l` output → loop devices. Devices without a backing file (unbound) are left out. */
export function parseLosetupJson(text: string): LoopDevice[] {
  if (text.trim() === "") return []; // losetup prints nothing at all when no device is bound
  const data = JSON.parse(text) as { loopdevices?: Record<string, unknown>[] };
  const out: LoopDevice[] = [];
  for (const row of data.loopdevices ?? []) {
    const device = row["name"];
    const dev = row["maj:min"];
    const back = row["back-file"];
    if (typeof device !== "string" || typeof dev !== "string" || typeof back !== "string" || back === "") continue;
    const deleted = back.endsWith(DELETED);
    // losetup pads maj:min for column alignment even in JSON ("  7:0  ").
    out.push({
      device,
      dev: dev.trim(),
      backingFile: deleted ? back.slice(0, -DELETED.length) : back,
      backingFileDeleted: deleted,
    });
  }
  return out;
}

/**
 * Every bound loop device, from losetup in a child with a deadline. Fails with what happened (deadline,
 * CommandFailedError with the result, a cut or unparseable listing); what that means is gc's to say.
 */
export async function listLoopDevices(
  runner: Runner,
  opts: { timeoutMs: number; signal?: AbortSignal; losetupBin?: string },
): Promise<LoopDevice[]> {
  const r = await runner(opts.losetupBin ?? "losetup", ["--json", "--list", "--output", "NAME,MAJ:MIN,BACK-FILE"], {
    timeoutMs: opts.timeoutMs,
    ...(opts.signal ? { signal: opts.signal } : {}),
    maxOutputBytes: 16 * 1024 * 1024,
  });
  if (r.timedOut) throw new DeadlineError("losetup --list", opts.timeoutMs);
  if (!ok(r)) throw new CommandFailedError(r, "listing loop devices");
  const listing = completeStdout(r, "the loop device list");
  try {
    return parseLosetupJson(listing);
  } catch (e) {
    throw new Error(`losetup --json printed something that is not JSON: ${errorMessage(e)}`, { cause: e });
  }
}
