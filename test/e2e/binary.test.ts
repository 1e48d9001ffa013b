/**
 * End to end on the compiled binary, copied into an empty directory with no node_modules around.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { csiClient } from "../../src/csi/client.ts";
import { REQUIRED_TOOLS } from "../../src/modes/csi-node.ts";

const SRC_BIN = `${import.meta.dir}/../../dist/rds-csi`;
const dir = mkdtempSync("/tmp/rds-csi-e2e-");
const BIN = `${dir}/bin/rds-csi`;
const spawned: Bun.Subprocess[] = [];
const loops: string[] = [];

beforeAll(async () => {
  if (!existsSync(SRC_BIN)) {
    const b = Bun.spawnSync(["scripts/build"], { cwd: `${import.meta.dir}/../..` });
    if (b.exitCode !== 0) throw new Error(`build failed: ${b.stderr}`);
  }
  mkdirSync(`${dir}/bin`);
  copyFileSync(SRC_BIN, BIN);
  chmodSync(BIN, 0o755);
});

afterAll(async () => {
  for (const p of spawned) if (p.exitCode === null) p.kill("SIGKILL");
  for (const target of [`${dir}/kubelet/staging/slow`]) Bun.spawnSync(["umount", target]);
  for (const l of loops) Bun.spawnSync(["losetup", "-d", l]);
});

function run(args: string[], env: Record<string, string> = {}) {
  const r = Bun.spawnSync([BIN, ...args], { cwd: dir, env: { PATH: process.env.PATH!, ...env } });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

function daemon(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn([BIN, ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH!, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  spawned.push(p);
  return p;
}

async function waitReady(endpoint: string) {
  const c = csiClient(endpoint);
  for (let i = 0; i < 200; i++) {
    try {
      await c.identity.GetPluginInfo({}, { deadlineMs: 500 });
      return c;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`no answer on ${endpoint}`);
}

describe("compiled binary", () => {
  test("runs from an empty directory: version", () => {
    const r = run(["version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^rds-csi \d+\.\d+\.\d+/);
  });

  test("unknown flags exit 2 with a clear message", () => {
    const r = run(["csi-node", "--no-such-flag", "1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Unknown argument");
  });

  test("a bad --nqn-prefix exits 2 naming the option and creates nothing", () => {
    const state = `${dir}/badprefix-state`;
    const sock = `${dir}/badprefix/csi.sock`;
    const r = run([
      "csi-node",
      "--nqn-prefix",
      "nqn.2000-02.com.mikrotik:",
      "--state-dir",
      state,
      "--endpoint",
      `unix://${sock}`,
      "--node-id",
      "n1",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--nqn-prefix");
    expect(r.stderr).toContain("nqn.2000-02.com.mikrotik:");
    expect(existsSync(state)).toBe(false);
    expect(existsSync(`${dir}/badprefix`)).toBe(false);
    for (const mode of ["gc", "csi-node"]) {
      const missing = run([mode, "--state-dir", state, "--endpoint", `unix://${sock}`]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toContain("--nqn-prefix is required");
    }
    expect(existsSync(state)).toBe(false);
  });

  test("csi-controller (file backend) and csi-node serve Identity on their sockets; SIGTERM exits 0 and removes the socket", async () => {
    const ctlSock = `${dir}/ctl/csi.sock`;
    const ctl = daemon([
      "csi-controller",
      "--backend",
      "file",
      "--file-dir",
      `${dir}/volumes`,
      "--state-dir",
      `${dir}/ctl-state`,
      "--endpoint",
      `unix://${ctlSock}`,
    ]);
    const nodeSock = `${dir}/node/csi.sock`;
    const node = daemon([
      "csi-node",
      "--nqn-prefix",
      "nqn.2000-02.com.mikrotik:pvc-",
      "--node-id",
      "e2e-node",
      "--state-dir",
      `${dir}/node-state`,
      "--kubelet-dir",
      `${dir}/kubelet`,
      "--file-dir",
      `${dir}/volumes`,
      "--endpoint",
      `unix://${nodeSock}`,
    ]);
    const c1 = await waitReady(`unix://${ctlSock}`);
    const c2 = await waitReady(`unix://${nodeSock}`);
    expect((await c1.identity.GetPluginInfo({})).name).toBe("rds.csi.srvlab.io");
    expect((await c1.identity.GetPluginInfo({})).vendor_version).not.toBe("");
    const ctlCaps = JSON.stringify(await c1.identity.GetPluginCapabilities({}));
    expect(ctlCaps).toContain("CONTROLLER_SERVICE");
    expect(JSON.stringify(await c2.identity.GetPluginCapabilities({}))).not.toContain("CONTROLLER_SERVICE");
    expect(await c1.identity.Probe({})).toEqual({ ready: { value: true } });
    c1.close();
    c2.close();
    ctl.kill("SIGTERM");
    node.kill("SIGTERM");
    expect(await ctl.exited).toBe(0);
    expect(await node.exited).toBe(0);
    expect(existsSync(ctlSock)).toBe(false);
    expect(existsSync(nodeSock)).toBe(false);
  });

  test("SIGTERM while a slow NodeStageVolume runs: it completes, then the process exits 0", async () => {
    // A slow fsck (real fsck after a pause) stands in for a health check on a large volume.
    const slowBin = `${dir}/slowbin`;
    mkdirSync(slowBin, { recursive: true });
    const realFsck = Bun.which("fsck.ext4")!;
    writeFileSync(`${slowBin}/fsck.ext4`, `#!/bin/sh\nsleep 2\nexec ${realFsck} "$@"\n`);
    chmodSync(`${slowBin}/fsck.ext4`, 0o755);
    const img = `${dir}/slow.img`;
    Bun.spawnSync(["truncate", "-s", "64M", img]);
    expect(Bun.spawnSync(["mkfs.ext4", "-q", "-F", img]).exitCode).toBe(0);

    const sock = `${dir}/slow-node/csi.sock`;
    const node = daemon(
      [
        "csi-node",
        "--nqn-prefix",
        "nqn.2000-02.com.mikrotik:pvc-",
        "--node-id",
        "slow-node",
        "--state-dir",
        `${dir}/slow-state`,
        "--kubelet-dir",
        `${dir}/kubelet`,
        "--file-dir",
        dir,
        "--endpoint",
        `unix://${sock}`,
      ],
      { PATH: `${slowBin}:${process.env.PATH}` },
    );
    const c = await waitReady(`unix://${sock}`);
    const staging = `${dir}/kubelet/staging/slow`;
    const stage = c.node
      .NodeStageVolume({
        volume_id: "pvc-00000000-0000-4000-8000-00000000e2e1",
        staging_target_path: staging,
        volume_capability: { mount: { fs_type: "ext4", mount_flags: [] }, access_mode: { mode: "SINGLE_NODE_WRITER" } },
        volume_context: { transport: "loop", backingFile: img },
        publish_context: {},
      })
      .then(
        () => "ok",
        (e) => `error ${e.code} ${e.details}`,
      );
    await Bun.sleep(800);
    node.kill("SIGTERM");
    const result = await stage;
    expect(result).toBe("ok");
    expect(await node.exited).toBe(0);
    expect(existsSync(sock)).toBe(false);
    const mounts = await Bun.file("/proc/self/mountinfo").text();
    expect(mounts).toContain(staging);
    // Record of the loop device, so afterAll can detach it.
    const lo = Bun.spawnSync(["losetup", "-j", img]).stdout.toString().split(":")[0];
    if (lo) loops.push(lo);
    c.close();
  });

  test("daemons run with the JIT off (one re-exec, same pid); a BUN_JSC_useJIT the operator sets wins", async () => {
    const jitOf = (pid: number) =>
      readFileSync(`/proc/${pid}/environ`, "utf8")
        .split("\0")
        .find((e) => e.startsWith("BUN_JSC_useJIT="));
    for (const [env, expected] of [
      [{}, "BUN_JSC_useJIT=0"],
      [{ BUN_JSC_useJIT: "1" }, "BUN_JSC_useJIT=1"],
    ] as const) {
      const sock = `${dir}/jit-${expected.slice(-1)}/csi.sock`;
      const node = daemon(
        [
          "csi-node",
          "--nqn-prefix",
          "nqn.2000-02.com.mikrotik:pvc-",
          "--node-id",
          "jit",
          "--state-dir",
          `${dir}/jit-state-${expected.slice(-1)}`,
          "--kubelet-dir",
          `${dir}/kubelet`,
          "--endpoint",
          `unix://${sock}`,
        ],
        env,
      );
      const c = await waitReady(`unix://${sock}`);
      // The pid we started is the one serving: execve replaced the image in place.
      expect(jitOf(node.pid)).toBe(expected);
      c.close();
      node.kill("SIGTERM");
      expect(await node.exited).toBe(0);
    }
  });

  test("one-shot tools keep the JIT: doctor (here in --watch, so it can be looked at) is not re-executed", async () => {
    const doc = daemon([
      "doctor",
      "--watch",
      "1h",
      "--state-dir",
      `${dir}/doctor-state`,
      "--kubelet-dir",
      `${dir}/kubelet`,
    ]);
    let environ = "";
    for (let i = 0; i < 100 && !environ.includes("PATH="); i++) {
      await Bun.sleep(50);
      try {
        environ = readFileSync(`/proc/${doc.pid}/environ`, "utf8");
      } catch {
        /* not yet */
      }
    }
    expect(environ).toContain("PATH=");
    expect(environ).not.toContain("BUN_JSC_useJIT");
    doc.kill("SIGTERM");
    await doc.exited;
  });

  test("a node missing a required tool answers Probe not ready and logs which tool", async () => {
    // A PATH with every tool the node checks for except xfs_growfs.
    const bin = `${dir}/partial-bin`;
    mkdirSync(bin, { recursive: true });
    for (const tool of ["nvme", ...REQUIRED_TOOLS.filter((t) => t !== "xfs_growfs")]) {
      const real = Bun.which(tool);
      if (real) symlinkSync(real, `${bin}/${tool}`);
    }
    const sock = `${dir}/partial/csi.sock`;
    const node = daemon(
      [
        "csi-node",
        "--nqn-prefix",
        "nqn.2000-02.com.mikrotik:pvc-",
        "--node-id",
        "partial",
        "--state-dir",
        `${dir}/partial-state`,
        "--kubelet-dir",
        `${dir}/kubelet`,
        "--endpoint",
        `unix://${sock}`,
      ],
      { PATH: bin },
    );
    const c = await waitReady(`unix://${sock}`);
    expect(await c.identity.Probe({})).toEqual({ ready: { value: false } });
    c.close();
    node.kill("SIGTERM");
    expect(await node.exited).toBe(0);
    const lines = (await new Response(node.stdout).text())
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(lines.find((l) => l.msg === "required tools are missing; Probe reports not ready")?.missing).toEqual([
      "xfs_growfs",
    ]);
  });

  test("no stray files were written next to the binary", () => {
    expect(readdirSync(`${dir}/bin`)).toEqual(["rds-csi"]);
  });
});
