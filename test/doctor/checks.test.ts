import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { breakersCheck } from "../../src/health/breakers.ts";
import { createDStateCheck, kernelLogCheck, parseProcStat } from "../../src/health/kernel.ts";
import { nvmeCheck } from "../../src/health/nvme.ts";
import { iowaitCheck, memoryCheck } from "../../src/health/resources.ts";
import { runChecks } from "../../src/health/run-checks.ts";
import type { Check, Finding, HealthDeps, RoundFacts } from "../../src/health/types.ts";
import { createProbeRegistry } from "../../src/mount/probe.ts";
import { parseMountinfo } from "../../src/mount/mountinfo.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { sleep } from "../../src/runtime/deadline.ts";
import { makeFakeSysfs, orphan } from "../helpers/fake-sysfs.ts";
import { makeFakeProc, mountLine, writeCpu, writeTask } from "../helpers/fake-proc.ts";

const dirs: string[] = [];
const tmp = (p: string) => {
  const d = mkdtempSync(join(tmpdir(), p));
  dirs.push(d);
  return d;
};
const probes = createProbeRegistry({ timeoutMs: 2000 });
afterAll(() => {
  probes.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function deps(over: Partial<HealthDeps> = {}): HealthDeps {
  return {
    runner: createRunner(),
    log: silentLogger(),
    sysfsRoot: tmp("sys-"),
    procRoot: tmp("proc-"),
    devRoot: tmp("dev-"),
    stateDir: tmp("state-"),
    kubeletDir: "/var/lib/kubelet",
    protectedNqns: [],
    hostnqnFile: "/nonexistent/hostnqn",
    nvmeCommand: "nvme",
    probes,
    probeTimeoutMs: 2000,
    stormThreshold: 100,
    sampleMs: 50,
    kernelLogWindowMs: 3_600_000,
    ...over,
  };
}
const byClass = (fs: Finding[], cls: string) => fs.find((f) => f.class === cls)!;
const run = (c: Check, d: HealthDeps, facts: RoundFacts = {}) => c.run(d, facts, new AbortController().signal);

describe("D state", () => {
  test("parses comm with spaces and parentheses", () => {
    expect(parseProcStat(5, "5 (my (odd) cmd) D 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0")).toMatchObject({
      comm: "my (odd) cmd",
      state: "D",
      startTicks: 777,
    });
  });

  test("reports tasks still in D after the sample with wchan, ignores running ones and ones that left D", async () => {
    const procRoot = tmp("proc-");
    makeFakeProc(procRoot, {
      tasks: [
        { pid: 101, comm: "stat", state: "D", wchan: "request_wait_answer" },
        { pid: 102, comm: "kworker/u8:1", state: "D", wchan: "blk_mq_get_tag" },
        { pid: 103, comm: "bash", state: "S", wchan: "do_wait" },
      ],
    });
    const check = createDStateCheck();
    const d = deps({ procRoot, sampleMs: 200 });
    const pending = run(check, d);
    await sleep(50);
    writeTask(procRoot, { pid: 102, comm: "kworker/u8:1", state: "R" });
    const f = byClass(await pending, "d_state_processes");
    expect(f.severity).toBe("warning");
    const procs = (f.details as { processes: { pid: number; wchan: string; inDStateMs: number }[] }).processes;
    expect(procs.map((p) => p.pid)).toEqual([101]);
    expect(procs[0]!.wchan).toBe("request_wait_answer");
    expect(procs[0]!.inDStateMs).toBeGreaterThanOrEqual(200);
    expect(f.message).toContain("101 stat in request_wait_answer");
  });

  test("no D-state task is ok", async () => {
    const procRoot = tmp("proc-");
    makeFakeProc(procRoot, { tasks: [{ pid: 7, comm: "init", state: "S" }] });
    expect(byClass(await run(createDStateCheck(), deps({ procRoot })), "d_state_processes").severity).toBe("ok");
  });
});

describe("memory and I/O wait", () => {
  test("MemAvailable under 5 % is critical, swap over 80 % a warning", async () => {
    const procRoot = tmp("proc-");
    makeFakeProc(procRoot, {
      meminfo: { totalKb: 1_000_000, availableKb: 40_000, swapTotalKb: 1000, swapFreeKb: 100 },
    });
    const fs = await run(memoryCheck, deps({ procRoot }));
    expect(byClass(fs, "memory_pressure").severity).toBe("critical");
    expect(byClass(fs, "memory_pressure").message).toContain("4.0 %");
    expect(byClass(fs, "swap_pressure").severity).toBe("warning");
  });

  test("healthy memory and no swap are ok", async () => {
    const procRoot = tmp("proc-");
    makeFakeProc(procRoot, { meminfo: { totalKb: 1_000_000, availableKb: 600_000 } });
    const fs = await run(memoryCheck, deps({ procRoot }));
    expect(fs.map((f) => f.severity)).toEqual(["ok", "ok"]);
  });

  test("I/O wait above 50 % over the sample is a warning; below is ok", async () => {
    const procRoot = tmp("proc-");
    makeFakeProc(procRoot, { cpu: [100, 0, 100, 1000, 10, 0, 0, 0] });
    const d = deps({ procRoot, sampleMs: 200 });
    let pending = run(iowaitCheck, d);
    await sleep(50);
    writeCpu(procRoot, [110, 0, 110, 1020, 70, 0, 0, 0]); // +100 ticks, 60 of them iowait
    let f = byClass(await pending, "iowait");
    expect(f.severity).toBe("warning");
    expect(f.message).toContain("60.0 %");
    pending = run(iowaitCheck, d);
    await sleep(50);
    writeCpu(procRoot, [150, 0, 150, 1100, 80, 0, 0, 0]); // +140 ticks, 10 iowait
    f = byClass(await pending, "iowait");
    expect(f.severity).toBe("ok");
  });
});

describe("kernel log", () => {
  test("recent nvme/xfs errors from kmsg are reported; old and unrelated lines are not", async () => {
    const procRoot = tmp("proc-");
    const devRoot = tmp("dev-");
    makeFakeProc(procRoot, { uptimeSeconds: 10_000 });
    writeFileSync(
      join(devRoot, "kmsg"),
      [
        "3,1,100000000,-;nvme nvme0: I/O error, old news", // 100 s after boot: outside the 1 h window
        "6,2,9000000000,-;eth0: link up", // unrelated
        "4,3,9500000000,-;nvme nvme1: queue 0: timeout, reset controller",
        " SUBSYSTEM=nvme",
        "3,4,9600000000,-;XFS (nvme1n1): metadata I/O error in xfs_trans_read_buf",
        "6,5,9700000000,-;nvme nvme1: creating 4 I/O queues.", // nvme but not trouble, info level
      ].join("\n") + "\n",
    );
    const f = byClass(await run(kernelLogCheck, deps({ procRoot, devRoot })), "kernel_log_errors");
    expect(f.severity).toBe("warning");
    const lines = (f.details as { lines: string[] }).lines;
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain("timeout, reset controller");
    expect(lines[1]).toContain("XFS (nvme1n1)");
  });

  test("an NVMe/TCP outage the kernel reconnected from is not a storage error; an I/O error next to it is", async () => {
    const procRoot = tmp("proc-");
    const devRoot = tmp("dev-");
    makeFakeProc(procRoot, { uptimeSeconds: 10_000 });
    // Lines as Debian's 6.1 kernel printed them in the VM suite (port removed, restored; a reconnecting controller disconnected).
    const outage = [
      "4,1,9000000000,-;nvme nvme0: starting error recovery",
      "6,2,9000100000,-;nvme nvme0: Reconnecting in 2 seconds...",
      "3,3,9002000000,-;nvme nvme0: failed to connect socket: -111",
      "6,4,9002000100,-;nvme nvme0: Failed reconnect attempt 1",
      "6,5,9002000200,-;block nvme0n1: no usable path - requeuing I/O",
      "6,6,9004000000,-;nvme nvme0: Successfully reconnected (2 attempt)",
      "4,7,9005000000,-;nvme nvme1: Property Set error: 880, offset 0x14",
    ];
    writeFileSync(join(devRoot, "kmsg"), `${outage.join("\n")}\n`);
    const quiet = byClass(await run(kernelLogCheck, deps({ procRoot, devRoot })), "kernel_log_errors");
    expect(quiet.severity).toBe("ok");
    expect((quiet.details as { reconnect_lines: number }).reconnect_lines).toBe(7);
    writeFileSync(
      join(devRoot, "kmsg"),
      `${[...outage, "3,8,9006000000,-;blk_update_request: I/O error, dev nvme0n1, sector 2048 op 0x1:(WRITE)"].join("\n")}\n`,
    );
    const hurt = byClass(await run(kernelLogCheck, deps({ procRoot, devRoot })), "kernel_log_errors");
    expect(hurt.severity).toBe("warning");
    expect((hurt.details as { lines: string[] }).lines).toEqual([
      "[9006.000] blk_update_request: I/O error, dev nvme0n1, sector 2048 op 0x1:(WRITE)",
    ]);
  });

  test("a quiet log is ok", async () => {
    const procRoot = tmp("proc-");
    const devRoot = tmp("dev-");
    makeFakeProc(procRoot);
    writeFileSync(join(devRoot, "kmsg"), "6,1,5000000,-;eth0: link up\n");
    expect(byClass(await run(kernelLogCheck, deps({ procRoot, devRoot })), "kernel_log_errors").severity).toBe("ok");
  });
});

describe("NVMe", () => {
  const PREFIX = "nqn.2000-02.com.mikrotik:pvc-";
  let binDir: string;
  beforeAll(() => {
    binDir = tmp("bin-");
    writeFileSync(
      join(binDir, "nvme"),
      "#!/bin/sh\n[ \"$1\" = version ] && echo 'nvme version 2.9.1 (test)' && exit 0\nexit 1\n",
    );
    chmodSync(join(binDir, "nvme"), 0o755);
  });

  function fixture(opts: { systemNqn: string }) {
    const sysfsRoot = tmp("sys-");
    const subs = makeFakeSysfs(sysfsRoot, [
      { nqn: `${PREFIX}good`, namespaces: [{ dev: "259:10" }] },
      {
        nqn: `${PREFIX}flaky`,
        controllers: [{ state: "live" }, { state: "connecting" }],
        namespaces: [{ dev: "259:11" }],
      },
      { nqn: `${PREFIX}orphan`, namespaces: [{ dev: "259:12" }] },
      { nqn: opts.systemNqn, namespaces: [{ dev: "259:13" }] },
      { nqn: "nqn.2014-08.org.example:other", namespaces: [{ dev: "259:14" }] },
      { nqn: "nqn.2000-02.com.mikrotik:someone-else", namespaces: [{ dev: "259:15" }] },
    ]);
    orphan(sysfsRoot, `${PREFIX}orphan`);
    mkdirSync(join(sysfsRoot, "module", "nvme_tcp"), { recursive: true });
    const mounts = parseMountinfo(
      mountLine(1, "/", "ext4", `/dev/${subs[3]!.namespaces[0]}`, "259:13") +
        mountLine(
          2,
          "/var/lib/kubelet/plugins/kubernetes.io/csi/x/globalmount",
          "ext4",
          `/dev/${subs[0]!.namespaces[0]}`,
          "259:10",
        ),
    );
    return { sysfsRoot, mounts };
  }

  test("path states, orphaned subsystems, classification, nvme-cli, module and host NQN", async () => {
    const { sysfsRoot, mounts } = fixture({ systemNqn: "nqn.2000-02.com.mikrotik:nixos-root" });
    const hostnqn = join(tmp("etc-"), "hostnqn");
    writeFileSync(hostnqn, "nqn.2014-08.org.nvmexpress:uuid:5b1d6c1e-6f1a-4c43-9d3c-1f3e6a5e2b11\n");
    const d = deps({
      sysfsRoot,
      nqnPrefix: PREFIX,
      protectedNqns: ["nqn.2014-08.org.example:*"],
      hostnqnFile: hostnqn,
      nvmeCommand: join(binDir, "nvme"),
    });
    const fs = await run(nvmeCheck, d, { mounts });
    const rows = (
      byClass(fs, "nvme_subsystems").details as {
        subsystems: { nqn: string; class: string; paths: { state: string }[] }[];
      }
    ).subsystems;
    const cls = Object.fromEntries(rows.map((r) => [r.nqn, r.class]));
    expect(cls).toEqual({
      [`${PREFIX}good`]: "managed",
      [`${PREFIX}flaky`]: "managed",
      [`${PREFIX}orphan`]: "managed",
      "nqn.2000-02.com.mikrotik:nixos-root": "system",
      "nqn.2014-08.org.example:other": "protected",
      "nqn.2000-02.com.mikrotik:someone-else": "foreign",
    });
    const notLive = byClass(fs, "nvme_paths_not_live");
    expect(notLive.severity).toBe("warning");
    expect(notLive.message).toContain("connecting");
    expect(notLive.message).toContain(`${PREFIX}flaky`);
    const orphaned = byClass(fs, "nvme_orphaned_subsystems");
    expect(orphaned.severity).toBe("warning");
    expect((orphaned.details as { subsystems: { nqn: string }[] }).subsystems.map((s) => s.nqn)).toEqual([
      `${PREFIX}orphan`,
    ]);
    expect(byClass(fs, "nvme_prefix_covers_system_volume").severity).toBe("ok");
    expect(byClass(fs, "nvme_cli").message).toContain("2.9.1");
    expect(byClass(fs, "nvme_tcp_module").severity).toBe("ok");
    expect(byClass(fs, "nvme_hostnqn").severity).toBe("ok");
  });

  test("a prefix matching the subsystem behind / is critical; missing module, CLI and shared host NQN are warnings", async () => {
    const { sysfsRoot, mounts } = fixture({ systemNqn: `${PREFIX}but-really-root` });
    rmSync(join(sysfsRoot, "module", "nvme_tcp"), { recursive: true });
    const hostnqn = join(tmp("etc-"), "hostnqn");
    writeFileSync(hostnqn, "nqn.2014-08.org.nvmexpress:uuid:03000200-0400-0500-0006-000700080009\n");
    const d = deps({ sysfsRoot, nqnPrefix: PREFIX, hostnqnFile: hostnqn, nvmeCommand: join(binDir, "no-such-nvme") });
    const fs = await run(nvmeCheck, d, { mounts });
    const covers = byClass(fs, "nvme_prefix_covers_system_volume");
    expect(covers.severity).toBe("critical");
    expect(covers.message).toContain(`${PREFIX}but-really-root`);
    // The kubelet-tree mount does not make its subsystem a system volume.
    expect(covers.message).not.toContain(`${PREFIX}good`);
    expect(byClass(fs, "nvme_tcp_module").severity).toBe("warning");
    expect(byClass(fs, "nvme_cli").severity).toBe("warning");
    expect(byClass(fs, "nvme_hostnqn").message).toContain("shared default");
  });

  test("host NQN: missing or blank is a warning, something that is not an NQN is critical; both name --host-nqn-file", async () => {
    const etc = tmp("etc-");
    const cases: [string, string | undefined, Finding["severity"]][] = [
      ["missing", undefined, "warning"],
      ["blank", " \n", "warning"],
      ["a hostname", "node-1\n", "critical"],
    ];
    for (const [name, content, severity] of cases) {
      const hostnqnFile = join(etc, name);
      if (content !== undefined) writeFileSync(hostnqnFile, content);
      const f = byClass(await run(nvmeCheck, deps({ hostnqnFile })), "nvme_hostnqn");
      expect({ name, severity: f.severity }).toEqual({ name, severity });
      expect(f.message).toContain(`--host-nqn-file ${hostnqnFile}`);
    }
  });
});

describe("breakers of a running csi-node", () => {
  test("open breakers are a warning; no admin socket is info", async () => {
    const stateDir = tmp("state-");
    const none = byClass(await run(breakersCheck, deps({ stateDir })), "csi_node_breakers");
    expect(none.severity).toBe("info");
    expect(none.message).toContain("not reachable");
    const server = Bun.serve({
      unix: join(stateDir, "admin.sock"),
      fetch: () =>
        Response.json([
          { key: "volume:pvc-1", state: "open", failures: 3, openUntil: Date.now() + 60_000 },
          { key: "backend:10.0.0.1", state: "closed", failures: 0 },
        ]),
    });
    try {
      const f = byClass(await run(breakersCheck, deps({ stateDir })), "csi_node_breakers");
      expect(f.severity).toBe("warning");
      expect(f.message).toContain("volume:pvc-1");
      expect(f.message).not.toContain("backend:10.0.0.1");
    } finally {
      server.stop(true);
    }
  });
});

describe("running checks", () => {
  test("a throwing check and an overrunning check become findings; the others still report", async () => {
    const good: Check = {
      name: "good",
      run: async () => [{ check: "good", severity: "ok", class: "good", message: "fine" }],
    };
    const bad: Check = {
      name: "bad",
      run: async () => {
        throw new Error("boom");
      },
    };
    const slow: Check = { name: "slow", run: (_d, _f, signal) => sleep(60_000, signal).then(() => []) };
    const fs = await runChecks([good, bad, slow], deps(), {}, { checkTimeoutMs: 300 });
    expect(fs.map((f) => `${f.check}:${f.class}:${f.severity}`).sort()).toEqual([
      "bad:check_failed:warning",
      "good:good:ok",
      "slow:check_timeout:warning",
    ]);
    expect(fs.find((f) => f.check === "bad")!.message).toContain("boom");
  });
});
