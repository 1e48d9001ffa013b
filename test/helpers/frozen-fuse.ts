import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A bindfs FUSE mount whose daemon we own and can freeze with SIGSTOP. */
export interface FrozenFuse {
  source: string;
  mountPoint: string;
  pid: number;
  freeze(): void;
  thaw(): void;
  /** Always safe to call: thaws, lazily unmounts, stops bindfs, removes the temp dirs. */
  cleanup(): Promise<void>;
}

const mounted = (mp: string) =>
  readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === mp);

const run = (cmd: string, args: string[]) =>
  new Promise<number | null>((resolve) => {
    const c = spawn(cmd, args, { stdio: "ignore" });
    const t = setTimeout(() => c.kill("SIGKILL"), 5000);
    c.on("close", (code) => {
      clearTimeout(t);
      resolve(code);
    });
    c.on("error", () => {
      clearTimeout(t);
      resolve(null);
    });
  });

/** `under`: where the mount point is made (a node test's kubelet dir: node RPCs act only inside it). */
export async function createFrozenFuse(under: string = tmpdir()): Promise<FrozenFuse> {
  const source = mkdtempSync(join(tmpdir(), "frozen-src-"));
  const mountPoint = mkdtempSync(join(under, "frozen-mnt-"));
  // -f keeps bindfs in the foreground, so the pid we hold is the daemon we freeze.
  const daemon: ChildProcess = spawn("bindfs", ["-f", source, mountPoint], { stdio: "ignore" });
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    if (daemon.pid !== undefined) {
      try {
        process.kill(daemon.pid, "SIGCONT");
      } catch {
        /* gone */
      }
    }
    await run("fusermount", ["-u", "-z", mountPoint]);
    if (mounted(mountPoint)) await run("umount", ["-l", mountPoint]);
    if (daemon.exitCode === null) daemon.kill("SIGTERM");
    rmSync(mountPoint, { recursive: true, force: true });
    rmSync(source, { recursive: true, force: true });
  };
  for (let i = 0; i < 100 && !mounted(mountPoint); i++) await Bun.sleep(50);
  if (!mounted(mountPoint) || daemon.pid === undefined) {
    await cleanup();
    throw new Error(`bindfs did not mount ${mountPoint}`);
  }
  const pid = daemon.pid;
  return {
    source,
    mountPoint,
    pid,
    freeze: () => process.kill(pid, "SIGSTOP"),
    thaw: () => process.kill(pid, "SIGCONT"),
    cleanup,
  };
}

/** Pids of processes whose command line mentions `needle` (reads /proc of this test machine). */
export function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (cmd.includes(needle)) out.push(Number(d));
    } catch {
      /* exited */
    }
  }
  return out;
}
