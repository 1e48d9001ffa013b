import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { addSubsystem, orphan } from "../helpers/fake-sysfs.ts";
import {
  forgetBlockDevice,
  gcArgs,
  ids,
  makeSandbox,
  pidAlive,
  PREFIX,
  recordFor,
  runGc,
  sh,
  stagingPath,
  type Sandbox,
} from "./helpers.ts";

let sb: Sandbox | undefined;
afterEach(() => {
  sb?.cleanup();
  sb = undefined;
});

const mounted = (at: string) =>
  readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .some((l) => l.split(" ")[4] === at);
const attached = (device: string) =>
  sh("losetup", ["--list", "--noheadings", "--output", "NAME"])
    .split("\n")
    .map((s) => s.trim())
    .includes(device);

describe("gc end to end (bun src/main.ts gc)", () => {
  test("finds every candidate kind, leaves protected/foreign/system/live ones alone, and --force cleans exactly the candidates", async () => {
    sb = makeSandbox();
    const s = sb;
    // A managed subsystem nobody mounts → nvme-subsystem.
    addSubsystem(s.sysfs, { nqn: `${PREFIX}aaa`, namespaces: [{ dev: "259:9001" }] });
    // Connected without a namespace → orphaned-subsystem.
    addSubsystem(s.sysfs, { nqn: `${PREFIX}bbb`, namespaces: [] });
    // Protected pattern and foreign prefix, both unmounted: never touched.
    addSubsystem(s.sysfs, { nqn: "nqn.2000-02.com.mikrotik:nixos-root", namespaces: [{ dev: "259:9002" }] });
    addSubsystem(s.sysfs, { nqn: "nqn.2014-08.org.example:disk1", namespaces: [{ dev: "259:9003" }] });
    // Managed NQN whose namespace (a real loop device) is mounted outside the kubelet tree → system volume.
    const sys = s.loop(join(s.other, "system.img"));
    s.registerLoopInSysfs(sys.device, sys.dev);
    addSubsystem(s.sysfs, { nqn: `${PREFIX}eee`, namespaces: [{ dev: sys.dev }] });
    s.mount(sys.device, join(s.root, "system-mnt"));
    // Managed NQN staged right now (mounted staging path + record) → live, left alone.
    const live = s.loop(join(s.other, "live.img"));
    s.registerLoopInSysfs(live.device, live.dev);
    addSubsystem(s.sysfs, { nqn: `${PREFIX}fff`, namespaces: [{ dev: live.dev }] });
    s.mount(live.device, stagingPath(s, "livehash"));
    const liveRecord = recordFor(s, {
      volume_id: "pvc-fff",
      transport: "nvme-tcp",
      nqn: `${PREFIX}fff`,
      staging_path: stagingPath(s, "livehash"),
    });
    // Staged volume whose NVMe namespace vanished: dead mount + orphaned subsystem + stale record.
    const gone = s.loop(join(s.other, "gone.img"));
    s.registerLoopInSysfs(gone.device, "7:99999"); // sysfs knows the loop under another number: its own is gone
    const ggg = addSubsystem(s.sysfs, { nqn: `${PREFIX}ggg`, namespaces: [{ dev: gone.dev }] });
    s.mount(gone.device, stagingPath(s, "gonehash"));
    orphan(s.sysfs, `${PREFIX}ggg`);
    forgetBlockDevice(s.sysfs, ggg.namespaces[0]!);
    const goneRecord = recordFor(s, {
      volume_id: "pvc-ggg",
      transport: "nvme-tcp",
      nqn: `${PREFIX}ggg`,
      staging_path: stagingPath(s, "gonehash"),
    });
    // A loop device of the file backend that nothing mounts → loop-device.
    const leaked = s.loop(join(s.files, "pvc-leaked.img"));
    s.registerLoopInSysfs(leaked.device, leaked.dev);
    // A record of a volume that is not staged and not attached → stale-record.
    const staleRecord = recordFor(s, {
      volume_id: "pvc-hhh",
      transport: "loop",
      backing_file: join(s.files, "pvc-hhh.img"),
      staging_path: stagingPath(s, "hhhhash"),
    });

    const planRun = await runGc(gcArgs(s, ["--json", "--verbose"]));
    expect(planRun.stderr).toBe("");
    expect(planRun.code).toBe(1);
    expect(ids(planRun.json!.candidates)).toEqual(
      [
        `dead-mount ${stagingPath(s, "gonehash")}`,
        `loop-device ${leaked.device}`,
        `nvme-subsystem ${PREFIX}aaa`,
        `orphaned-subsystem ${PREFIX}bbb`,
        `orphaned-subsystem ${PREFIX}ggg`,
        "stale-record pvc-ggg",
        "stale-record pvc-hhh",
      ].sort(),
    );
    const skipped = new Map(planRun.json!.skipped.map((x) => [x.id, x.reason]));
    expect(skipped.get("nqn.2000-02.com.mikrotik:nixos-root")).toContain("outside-prefix");
    expect(skipped.get("nqn.2014-08.org.example:disk1")).toContain("outside-prefix");
    expect(skipped.get(`${PREFIX}eee`)).toContain("backs-system-mount");
    expect(skipped.get(`${PREFIX}fff`)).toContain("pvc-fff is live");
    expect(skipped.get(sys.device)).toContain("not ours");
    // Plan mode changed nothing.
    expect(s.nvmeCalls()).toEqual([]);
    expect(mounted(stagingPath(s, "gonehash"))).toBe(true);

    const force = await runGc(gcArgs(s, ["--json", "--force"]));
    expect(force.code).toBe(0);
    expect(force.json!.results!.map((r) => r.status)).toEqual(Array(7).fill("done"));
    // The safe order: unmount first, disconnects before the records they protect, records last.
    expect(force.json!.results!.map((r) => r.kind)).toEqual([
      "dead-mount",
      "nvme-subsystem",
      "orphaned-subsystem",
      "orphaned-subsystem",
      "loop-device",
      "stale-record",
      "stale-record",
    ]);
    expect(s.nvmeCalls().sort()).toEqual([
      `disconnect -n ${PREFIX}aaa`,
      `disconnect -n ${PREFIX}bbb`,
      `disconnect -n ${PREFIX}ggg`,
    ]);
    expect(mounted(stagingPath(s, "gonehash"))).toBe(false);
    expect(mounted(stagingPath(s, "livehash"))).toBe(true);
    expect(mounted(join(s.root, "system-mnt"))).toBe(true);
    expect(attached(leaked.device)).toBe(false);
    expect(existsSync(goneRecord)).toBe(false);
    expect(existsSync(staleRecord)).toBe(false);
    expect(existsSync(liveRecord)).toBe(true);

    const again = await runGc(gcArgs(s, ["--json"]));
    expect(again.code).toBe(0);
    expect(again.json!.candidates).toEqual([]);
  }, 60_000);

  test("a disconnect that hangs is killed at its deadline, reported as timed out, and the run continues", async () => {
    sb = makeSandbox();
    const s = sb;
    addSubsystem(s.sysfs, { nqn: `${PREFIX}hang`, namespaces: [{ dev: "259:9101" }] });
    addSubsystem(s.sysfs, { nqn: `${PREFIX}next`, namespaces: [{ dev: "259:9102" }] });
    s.hang(`${PREFIX}hang`);
    const r = await runGc(gcArgs(s, ["--json", "--force", "--step-timeout", "1s"]));
    expect(r.code).toBe(1);
    const byId = new Map(r.json!.results!.map((x) => [x.id, x]));
    expect(byId.get(`${PREFIX}hang`)!.status).toBe("timed-out");
    expect(byId.get(`${PREFIX}hang`)!.detail).toContain("not retried");
    expect(byId.get(`${PREFIX}next`)!.status).toBe("done");
    // One attempt each: the timed-out one was not tried again.
    expect(s.nvmeCalls()).toEqual([`disconnect -n ${PREFIX}hang`, `disconnect -n ${PREFIX}next`]);
    // The sleeping child was killed with its process group, well before its 100 s.
    const sleeper = Number(readFileSync(join(s.hangDir, `${PREFIX}hang.pid`), "utf8"));
    expect(await pidAlive(sleeper)).toBe(false);
    expect(r.ms).toBeLessThan(30_000);
  }, 60_000);

  test("SIGTERM during --force finishes the current step and stops", async () => {
    sb = makeSandbox();
    const s = sb;
    for (const n of ["t1", "t2", "t3"]) {
      addSubsystem(s.sysfs, { nqn: `${PREFIX}${n}`, namespaces: [{ dev: `259:92${n.slice(1)}` }] });
      s.hang(`${PREFIX}${n}`);
    }
    let pid = 0;
    const running = runGc(gcArgs(s, ["--json", "--force", "--step-timeout", "3s"]), {
      onStart: (p) => {
        pid = p;
      },
    });
    // Wait until the first step is under way, then ask the run to stop.
    for (let i = 0; i < 200 && s.nvmeCalls().length === 0; i++) await Bun.sleep(50);
    expect(s.nvmeCalls().length).toBe(1);
    process.kill(pid, "SIGTERM");
    const r = await running;
    expect(r.code).toBe(1);
    expect(r.json!.results!.map((x) => x.status)).toEqual(["timed-out", "not-run", "not-run"]);
    expect(s.nvmeCalls().length).toBe(1);
  }, 60_000);
});

describe("locks", () => {
  const writeLock = (path: string, pid: number, command: string) => {
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, JSON.stringify({ pid, startedAt: new Date().toISOString(), command }));
  };

  test("a protected pattern inside the prefix refuses the run before anything is read, in one line", async () => {
    sb = makeSandbox();
    const s = sb;
    addSubsystem(s.sysfs, { nqn: `${PREFIX}keep-1`, namespaces: [{ dev: "259:9004" }] });
    const r = await runGc(gcArgs(s, ["--json", "--force", "--protected-nqn", `${PREFIX}keep-*`]));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `rds-csi gc: option --protected-nqn "${PREFIX}keep-*" overlaps --nqn-prefix "${PREFIX}": some NQN would be both managed and protected; protected NQNs must lie outside the managed prefix\n`,
    );
    expect(s.nvmeCalls()).toEqual([]);
  }, 60_000);

  test("the plan runs beside a live csi-node (exit 1: candidates, with a note), --force does not", async () => {
    sb = makeSandbox();
    const s = sb;
    addSubsystem(s.sysfs, { nqn: `${PREFIX}side`, namespaces: [{ dev: "259:9302" }] });
    const holder = Bun.spawn(["sleep", "60"]);
    try {
      writeLock(join(s.state, "csi-node.lock"), holder.pid, "rds-csi csi-node");
      const planned = await runGc(gcArgs(s, ["--json"]));
      expect(planned.code).toBe(1);
      expect(ids(planned.json!.candidates)).toEqual([`nvme-subsystem ${PREFIX}side`]);
      expect(planned.json!.warnings.join("\n")).toContain(`csi-node (pid ${holder.pid}`);
      const acted = await runGc(gcArgs(s, ["--json", "--force"]));
      expect(acted.code).toBe(2);
      expect(acted.stderr).toContain("refusing to act");
      expect(s.nvmeCalls()).toEqual([]);
    } finally {
      holder.kill();
    }
  }, 60_000);

  test("a live csi-node lock refuses --force; --ignore-lock proceeds with a warning", async () => {
    sb = makeSandbox();
    const s = sb;
    addSubsystem(s.sysfs, { nqn: `${PREFIX}lck`, namespaces: [{ dev: "259:9301" }] });
    const holder = Bun.spawn(["sleep", "60"]);
    try {
      writeLock(join(s.state, "csi-node.lock"), holder.pid, "rds-csi csi-node");
      const refused = await runGc(gcArgs(s, ["--json", "--force"]));
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain("csi-node");
      expect(refused.stderr).toContain("--ignore-lock");
      expect(s.nvmeCalls()).toEqual([]);

      const forced = await runGc(gcArgs(s, ["--json", "--force", "--ignore-lock"]));
      expect(forced.code).toBe(0);
      expect(forced.json!.warnings.join("\n")).toContain("--ignore-lock");
      expect(s.nvmeCalls()).toEqual([`disconnect -n ${PREFIX}lck`]);
    } finally {
      holder.kill();
    }
  }, 60_000);

  test("a stale csi-node lock (dead pid) is reported and ignored", async () => {
    sb = makeSandbox();
    const s = sb;
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    writeLock(join(s.state, "csi-node.lock"), dead.pid, "rds-csi csi-node");
    const r = await runGc(gcArgs(s, ["--json"]));
    expect(r.code).toBe(0);
    expect(r.json!.warnings.join("\n")).toContain(`stale csi-node lock ignored (pid ${dead.pid}`);
  }, 60_000);

  test("two gc runs cannot overlap", async () => {
    sb = makeSandbox();
    const s = sb;
    addSubsystem(s.sysfs, { nqn: `${PREFIX}one`, namespaces: [{ dev: "259:9401" }] });
    s.hang(`${PREFIX}one`);
    let pid = 0;
    const first = runGc(gcArgs(s, ["--json", "--force", "--step-timeout", "3s"]), {
      onStart: (p) => {
        pid = p;
      },
    });
    for (let i = 0; i < 200 && s.nvmeCalls().length === 0; i++) await Bun.sleep(50);
    expect(s.nvmeCalls().length).toBe(1);
    const second = await runGc(gcArgs(s, ["--json"]));
    expect(second.code).toBe(2);
    expect(second.stderr).toContain("another gc is running");
    expect(second.stderr).toContain(`pid ${pid}`);
    const r = await first;
    expect(r.code).toBe(1);
    // Released at the end: a later run goes ahead.
    expect((await runGc(gcArgs(s, ["--json"]))).code).toBe(1);
  }, 60_000);

  test("a lock that cannot be written (read-only state dir) is said as such, not as another gc running", async () => {
    sb = makeSandbox();
    const s = sb;
    // A real read-only mount over the state dir: root ignores file modes, not a read-only filesystem.
    sh("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "rds-gc-ro", s.state]);
    try {
      const r = await runGc(gcArgs(s, ["--json"]));
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("cannot take the gc lock");
      expect(r.stderr).toContain("EROFS");
      expect(r.stderr).not.toContain("another gc is running");
    } finally {
      sh("umount", [s.state]);
    }
  }, 60_000);
});
