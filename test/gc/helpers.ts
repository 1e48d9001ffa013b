import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, existsSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

/** Real loop devices, real mounts, a fabricated sysfs and a recording `nvme`: the world gc sees in tests. */

export const REPO = resolve(import.meta.dir, "..", "..");
export const FAKE_SYSFS_TS = join(REPO, "test", "helpers", "fake-sysfs.ts");
export const PREFIX = "nqn.2000-02.com.mikrotik:pvc-";
export const DRIVER = "rds.csi.srvlab.io";

export interface Sandbox {
  root: string;
  sysfs: string;
  kubelet: string;
  state: string;
  files: string;
  other: string;
  nvmeBin: string;
  nvmeLog: string;
  hangDir: string;
  loops: string[];
  mounts: string[];
  /** Lines the fake nvme was called with (without the pid). */
  nvmeCalls(): string[];
  /** Makes `nvme disconnect -n <nqn>` sleep 100 s (it writes the sleeper's pid to hangDir/<nqn>.pid). */
  hang(nqn: string): void;
  loop(file: string, sizeMiB?: number): { device: string; dev: string };
  registerLoopInSysfs(device: string, dev: string): void;
  mount(device: string, at: string, fsType?: string): void;
  cleanup(): void;
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: "utf8", timeout: 60_000 }).trim();
}

export function makeSandbox(): Sandbox {
  const root = mkdtempSync(join(tmpdir(), "rds-csi-gc-"));
  const dirs = {
    sysfs: join(root, "sys"),
    kubelet: join(root, "kubelet"),
    state: join(root, "state"),
    files: join(root, "files"),
    other: join(root, "other"),
    hangDir: join(root, "hang"),
  };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  mkdirSync(join(dirs.sysfs, "class", "nvme"), { recursive: true });
  mkdirSync(join(dirs.sysfs, "class", "nvme-subsystem"), { recursive: true });
  const nvmeLog = join(root, "nvme.log");
  const nvmeBin = join(root, "nvme");
  writeFileSync(
    nvmeBin,
    `#!/bin/bash
echo "$*" >> '${nvmeLog}'
if [ "$1" = disconnect ] && [ "$2" = -n ]; then
  if [ -e '${dirs.hangDir}'/"$3" ]; then
    sleep 100 &
    echo $! > '${dirs.hangDir}'/"$3".pid
    wait
  fi
  exec '${process.execPath}' '${FAKE_SYSFS_TS}' disconnect '${dirs.sysfs}' "$3"
fi
exit 0
`,
  );
  chmodSync(nvmeBin, 0o755);
  const loops: string[] = [];
  const mounts: string[] = [];
  const sb: Sandbox = {
    root,
    ...dirs,
    nvmeBin,
    nvmeLog,
    loops,
    mounts,
    nvmeCalls: () => (existsSync(nvmeLog) ? readFileSync(nvmeLog, "utf8").split("\n").filter(Boolean) : []),
    hang: (nqn) => writeFileSync(join(dirs.hangDir, nqn), ""),
    loop(file, sizeMiB = 16) {
      mkdirSync(dirname(file), { recursive: true });
      sh("truncate", ["-s", `${sizeMiB}M`, file]);
      const device = sh("losetup", ["--find", "--show", file]);
      loops.push(device);
      const dev = sh("losetup", ["--list", "--noheadings", "--output", "MAJ:MIN", device]).trim();
      return { device, dev };
    },
    registerLoopInSysfs(device, dev) {
      const name = device.replace("/dev/", "");
      mkdirSync(join(dirs.sysfs, "block", name), { recursive: true });
      writeFileSync(join(dirs.sysfs, "block", name, "dev"), dev + "\n");
    },
    mount(device, at, fsType = "ext4") {
      mkdirSync(at, { recursive: true });
      if (fsType) sh(`mkfs.${fsType}`, fsType === "ext4" ? ["-q", "-F", device] : ["-q", "-f", device]);
      sh("mount", [device, at]);
      mounts.push(at);
    },
    cleanup() {
      // Only what this sandbox created: its mounts (lazily, they may be dead) and its loop devices.
      for (const m of [...mounts].reverse()) spawnSync("umount", ["--lazy", m], { timeout: 10_000 });
      for (const l of loops) {
        const back =
          spawnSync("losetup", ["--list", "--noheadings", "--output", "BACK-FILE", l], {
            encoding: "utf8",
            timeout: 10_000,
          }).stdout ?? "";
        if (back.includes(root)) spawnSync("losetup", ["--detach", l], { timeout: 10_000 });
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
  return sb;
}

export interface GcRun {
  code: number;
  stdout: string;
  stderr: string;
  json?: GcJson;
  ms: number;
}

export interface GcJson {
  mode: "plan" | "force";
  warnings: string[];
  candidates: { kind: string; id: string; reason: string; action: Record<string, string> }[];
  results?: { kind: string; id: string; status: string; detail: string; durationMs: number }[];
  skipped: { kind: string; id: string; reason: string }[];
}

export function gcArgs(sb: Sandbox, extra: string[] = []): string[] {
  return [
    "gc",
    "--nqn-prefix",
    PREFIX,
    "--protected-nqn",
    "nqn.2000-02.com.mikrotik:nixos-*",
    "--sysfs-root",
    sb.sysfs,
    "--kubelet-dir",
    sb.kubelet,
    "--state-dir",
    sb.state,
    "--file-dir",
    sb.files,
    "--nvme-command",
    sb.nvmeBin,
    "--log-level",
    "error",
    ...extra,
  ];
}

/** Runs `bun src/main.ts gc …` (or the compiled binary) as a child and parses --json output. */
export async function runGc(
  args: string[],
  opts: { bin?: string; onStart?: (pid: number) => void; env?: Record<string, string> } = {},
): Promise<GcRun> {
  const started = performance.now();
  const cmd = opts.bin ? [opts.bin, ...args] : [process.execPath, join(REPO, "src", "main.ts"), ...args];
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...opts.env };
  delete env.KUBERNETES_SERVICE_HOST;
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env });
  opts.onStart?.(p.pid);
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  let json: GcJson | undefined;
  if (args.includes("--json") && stdout.trim().startsWith("{")) json = JSON.parse(stdout);
  return { code, stdout, stderr, json, ms: performance.now() - started };
}

export const ids = (xs: { kind: string; id: string }[] | undefined) =>
  (xs ?? []).map((x) => `${x.kind} ${x.id}`).sort();

export function recordFor(
  sb: Sandbox,
  r: {
    volume_id: string;
    transport: "nvme-tcp" | "loop";
    nqn?: string;
    backing_file?: string;
    staging_path: string;
    access_type?: "mount" | "block";
  },
) {
  const dir = join(sb.state, "volumes");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${r.volume_id}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      fs_type: "ext4",
      access_type: "mount",
      staged_at: new Date().toISOString(),
      state: "staged",
      ...r,
    }),
  );
  return path;
}

export const stagingPath = (sb: Sandbox, hash: string) =>
  join(sb.kubelet, "plugins", "kubernetes.io", "csi", DRIVER, hash, "globalmount");

/** Running (a killed child may linger briefly as a zombie until its new parent reaps it: that is not alive). */
export async function pidAlive(pid: number): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      return false;
    }
    if (stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z") return false;
    await Bun.sleep(50);
  }
  return true;
}

/** Removes a namespace's block entries too (the shared helper's orphan() leaves per-controller ones behind). */
export function forgetBlockDevice(sysfs: string, name: string) {
  rmSync(join(sysfs, "block", name), { recursive: true, force: true });
}
