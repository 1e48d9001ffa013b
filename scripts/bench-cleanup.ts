/**
 * Benchmarks leave the host as they found it, whatever happens. What a bench run creates (temp
 * trees, mounts and loop devices inside them, helper daemons) is registered in a marker file named
 * after its pid; it is torn down at exit, on SIGINT/SIGTERM/SIGHUP, and — when the run died
 * without a chance to clean (SIGKILL, OOM, power) — by the next bench run, which reaps the markers
 * of pids that are gone. Teardown never asks a filesystem anything: lazy unmount (MNT_DETACH takes
 * the whole subtree in one call, frozen FUSE mounts included), then detach loop devices backed by
 * files in the tree, then remove the tree.
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";

const MARKERS = "/tmp/rds-csi-bench-owned";
const marker = join(MARKERS, String(process.pid));

/** A thing this run owns: a tree to tear down, or a helper process (killed only if its command line still names `needle`). */
type Owned = { dir: string } | { pid: number; needle: string };

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
const mountPoints = () =>
  readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => unescape(l.split(" ")[4]!));
const sh = (cmd: string, args: string[]) => {
  try {
    execFileSync(cmd, args, { stdio: "ignore", timeout: 60_000 });
    return true;
  } catch {
    return false;
  }
};
const under = (p: string, dir: string) => p === dir || p.startsWith(dir + "/");

function loopDevices(): { dev: string; file: string }[] {
  try {
    const out = execFileSync("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"], {
      encoding: "utf8",
      timeout: 10_000,
    });
    return out
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[0] && f[1])
      .map(([dev, file]) => ({ dev: dev!, file: file!.replace(/ \(deleted\)$/, "") }));
  } catch {
    return [];
  }
}

/** Lazy-unmounts the topmost mounts inside dir (each takes its subtree along), detaches its loop devices, removes it. */
export function tearDownTree(dir: string): void {
  const inside = mountPoints()
    .filter((mp) => under(mp, dir))
    .sort((a, b) => a.length - b.length);
  const tops = inside.filter((mp, i) => !inside.slice(0, i).some((t) => under(mp, t)));
  for (const mp of tops) sh("umount", ["-l", mp]);
  for (const { dev, file } of loopDevices()) if (under(file, dir)) sh("losetup", ["-d", dev]);
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch (e) {
    console.error(`bench cleanup: could not remove ${dir}: ${(e as Error).message}`);
  }
}

function release(o: Owned): void {
  if ("dir" in o) return tearDownTree(o.dir);
  let cmdline = "";
  try {
    cmdline = readFileSync(`/proc/${o.pid}/cmdline`, "utf8");
  } catch {
    return;
  }
  if (!cmdline.includes(o.needle)) return; // the pid was reused by someone else
  try {
    process.kill(o.pid, "SIGCONT");
    process.kill(o.pid, "SIGKILL");
  } catch {
    /* gone */
  }
}

function readMarker(file: string): Owned[] {
  try {
    return readFileSync(file, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Owned);
  } catch {
    return [];
  }
}

function releaseAll(file: string): void {
  // Processes first (a frozen bindfs holds its mount), then trees, newest registration first.
  const owned = readMarker(file).reverse();
  for (const o of owned) if ("pid" in o) release(o);
  for (const o of owned) if ("dir" in o) release(o);
  rmSync(file, { force: true });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Tears down what earlier bench runs that died hard left behind (their pid is gone). */
function reapLeftovers(): void {
  if (!existsSync(MARKERS)) return;
  for (const name of readdirSync(MARKERS)) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid || alive(pid)) continue;
    const owned = readMarker(join(MARKERS, name));
    console.error(
      `bench cleanup: reaping leftovers of an interrupted run (pid ${pid}): ${owned.map((o) => ("dir" in o ? o.dir : `pid ${o.pid}`)).join(", ")}`,
    );
    releaseAll(join(MARKERS, name));
  }
}

let installed = false;
function install(): void {
  if (installed) return;
  installed = true;
  mkdirSync(MARKERS, { recursive: true });
  reapLeftovers();
  process.on("exit", () => releaseAll(marker));
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      console.error(`\nbench: ${sig}: cleaning up`);
      releaseAll(marker);
      process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGTERM" ? 15 : 1));
    });
  }
}

/** Registers something this run created; it is released at exit, on a signal, or by the next run. */
const ownedDirs: string[] = [];

export function own(o: Owned): void {
  install();
  if ("dir" in o) ownedDirs.push(o.dir);
  appendFileSync(marker, JSON.stringify(o) + "\n");
}

/** A fresh temp dir owned by this run (see own). */
export function benchTmpDir(name: string): string {
  install();
  const dir = mkdtempSync(`/tmp/rds-csi-bench-${name}-`);
  own({ dir });
  return dir;
}

/** What a bench must leave as it found: the host's mount count and attached loop devices. */
export function hostState() {
  install(); // reap an interrupted run's leftovers first: they are not part of what we found
  const before = { mounts: mountPoints().length, loops: loopDevices().length };
  return {
    /** Call at the very end, after every cleanup: prints before → after. Other processes on the host can move these too. */
    report(): string {
      const after = { mounts: mountPoints().length, loops: loopDevices().length };
      const same = after.mounts === before.mounts && after.loops === before.loops;
      // Other work on the host moves the totals too; what this run left in its own trees is ours alone.
      const ours = {
        mounts: mountPoints().filter((mp) => ownedDirs.some((d) => under(mp, d))).length,
        loops: loopDevices().filter(({ file }) => ownedDirs.some((d) => under(file, d))).length,
      };
      return (
        `host ${same ? "left as found" : "changed"}: mounts ${before.mounts} → ${after.mounts}, loop devices ${before.loops} → ${after.loops}; ` +
        `left by this run: ${ours.mounts} mounts, ${ours.loops} loop devices`
      );
    },
  };
}

/** Runs the bench's own cleanup now (idempotent) so that hostState().report() sees the final state. */
export function releaseNow(): void {
  releaseAll(marker);
}
