import { afterAll, describe, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { csiClient } from "../../src/csi/client.ts";
import { createFrozenFuse } from "../helpers/frozen-fuse.ts";
import { addSubsystem, makeFakeSysfs } from "../helpers/fake-sysfs.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");
const FAKE_NVME = join(import.meta.dir, "..", "helpers", "fake-nvme");
const PVC = "nqn.2000-02.com.mikrotik:pvc-5f0e6a55-0000-4000-8000-00000000beef";
const started: ChildProcess[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const c of started)
    if (c.exitCode === null && c.pid) {
      try {
        process.kill(c.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

async function startNode(extra: string[] = []) {
  const base = mkdtempSync(join(tmpdir(), "rds-node-grpc-"));
  dirs.push(base);
  const sysfs = join(base, "sys"),
    fake = join(base, "fake"),
    state = join(base, "state");
  mkdirSync(fake);
  makeFakeSysfs(sysfs, []);
  const endpoint = `unix://${join(base, "csi.sock")}`;
  let out = "";
  const child = spawn(
    process.execPath,
    [
      MAIN,
      "csi-node",
      "--endpoint",
      endpoint,
      "--state-dir",
      state,
      "--node-id",
      "node-g",
      "--sysfs-root",
      sysfs,
      "--dev-root",
      join(base, "dev"),
      "--kubelet-dir",
      join(base, "kubelet"),
      "--nvme-command",
      FAKE_NVME,
      "--host-nqn-file",
      join(base, "hostnqn"),
      "--probe-timeout",
      "2s",
      "--shutdown-grace",
      "20s",
      ...(extra.includes("--nqn-prefix") ? [] : ["--nqn-prefix", "nqn.2000-02.com.mikrotik:pvc-"]),
      ...extra,
    ],
    {
      env: { ...process.env, FAKE_NVME_DIR: fake, FAKE_SYSFS_ROOT: sysfs, BUN_BIN: process.execPath },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  started.push(child);
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  for (let i = 0; i < 100 && !existsSync(join(base, "csi.sock")); i++) await Bun.sleep(50);
  const client = csiClient(endpoint, { defaultDeadlineMs: 30_000 });
  return { base, sysfs, fake, state, child, client, exited, log: () => out };
}

describe("csi-node over gRPC", () => {
  test("SIGTERM during a slow stage: the stage completes, then the process exits 0", async () => {
    const n = await startNode();
    writeFileSync(join(n.fake, "connect-mode"), "slow");
    writeFileSync(join(n.fake, "connect-delay"), "2");
    expect((await n.client.identity.Probe!({})).ready.value).toBe(true);
    const staging = join(n.base, "kubelet", "plugins", "x", "globalmount");
    const stage = n.client.node.NodeStageVolume!({
      volume_id: "pvc-slow",
      staging_target_path: staging,
      volume_capability: { block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" } },
      volume_context: { nqn: PVC, nvmeAddress: "10.42.0.1", nvmePort: "4420" },
    });
    await Bun.sleep(500);
    process.kill(n.child.pid!, "SIGTERM");
    expect(await stage).toEqual({});
    expect(await n.exited).toBe(0);
    const record = JSON.parse(readFileSync(join(n.state, "volumes", "pvc-slow.json"), "utf8"));
    expect(record).toMatchObject({ state: "staged", nqn: PVC, transport: "nvme-tcp", access_type: "block" });
    expect(n.log()).toContain("draining");
    n.client.close();
  }, 30_000);

  test("a NodeStage the CO cancels while nvme connect hangs releases the volume: the retry stages within moments, not after the 30 s connect deadline", async () => {
    const n = await startNode();
    writeFileSync(join(n.fake, "connect-mode"), "hang");
    const staging = join(n.base, "kubelet", "plugins", "cancel", "globalmount");
    const req = {
      volume_id: "pvc-cancel",
      staging_target_path: staging,
      volume_capability: { block: {}, access_mode: { mode: "SINGLE_NODE_WRITER" } },
      volume_context: { nqn: PVC, nvmeAddress: "10.42.0.1", nvmePort: "4420" },
    };
    // The client gives up after 1 s (the connect deadline is 30 s): the hanging connect is killed.
    const first = await n.client.node.NodeStageVolume!(req, { deadlineMs: 1_000 }).then(
      () => 0,
      (e: { code: number }) => e.code,
    );
    expect(first).toBe(4);
    writeFileSync(join(n.fake, "connect-mode"), "ok");
    // Without the cancel the volume stays locked (ABORTED) until the 30 s connect deadline; with it,
    // the hanging connect is killed and the retry stages within a moment of the cancellation.
    let retry = -1;
    const until = Date.now() + 3_000;
    while (retry !== 0 && Date.now() < until) {
      retry = await n.client.node.NodeStageVolume!(req).then(
        () => 0,
        (e: { code: number }) => e.code,
      );
      if (retry !== 0) await Bun.sleep(100);
    }
    expect(retry).toBe(0);
    process.kill(n.child.pid!, "SIGTERM");
    await n.exited;
    n.client.close();
  }, 30_000);

  test("Probe answers in under 100 ms while a stats probe is stuck on a frozen FUSE mount", async () => {
    const n = await startNode();
    mkdirSync(join(n.base, "kubelet"), { recursive: true });
    const fuse = await createFrozenFuse(join(n.base, "kubelet"));
    try {
      mkdirSync(join(n.state, "volumes"), { recursive: true });
      writeFileSync(
        join(n.state, "volumes", "pvc-fz.json"),
        JSON.stringify({
          volume_id: "pvc-fz",
          transport: "loop",
          backing_file: "/nonexistent.img",
          staging_path: join(n.base, "st"),
          fs_type: "ext4",
          access_type: "mount",
          access_mode: "SINGLE_NODE_WRITER",
          mount_flags: [],
          staged_at: new Date().toISOString(),
          state: "staged",
          created_staging_dir: false,
          publications: [{ target_path: fuse.mountPoint, readonly: false, access_mode: "SINGLE_NODE_WRITER" }],
        }),
      );
      fuse.freeze();
      const stats = n.client.node.NodeGetVolumeStats!({ volume_id: "pvc-fz", volume_path: fuse.mountPoint });
      await Bun.sleep(300);
      const worst = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        expect((await n.client.identity.Probe!({})).ready.value).toBe(true);
        worst.push(performance.now() - t0);
      }
      expect(Math.max(...worst)).toBeLessThan(100);
      const r = await stats;
      expect(r.volume_condition.abnormal).toBe(true);
      expect(r.usage).toEqual([]);
    } finally {
      if (n.child.pid) process.kill(n.child.pid, "SIGTERM");
      await n.exited;
      n.client.close();
      await fuse.cleanup();
    }
  }, 30_000);

  test("upgrade from the Go driver: unstaging a volume it staged (no record) disconnects the NQN its id implies, and only that", async () => {
    // A protected pattern inside the prefix is refused at start (test/deploy/nix-module.test.ts), so the
    // node is started with a disjoint one; its own Go-driver NQN must still be the only one touched.
    const n = await startNode([
      "--nqn-prefix",
      "nqn.2000-02.com.mikrotik:pvc-",
      "--protected-nqn",
      "nqn.2000-02.com.mikrotik:nixos-*",
    ]);
    try {
      const goVolume = "pvc-5f0e6a55-1111-4000-8000-00000000cafe";
      const goNqn = `nqn.2000-02.com.mikrotik:${goVolume}`;
      const otherVolume = "pvc-00000000-2222-4000-8000-00000000cafe";
      addSubsystem(n.sysfs, {
        nqn: goNqn,
        controllers: [{ state: "live", transport: "tcp", address: "traddr=10.0.0.5,trsvcid=4420" }],
        namespaces: [{ dev: "259:71" }],
      });
      addSubsystem(n.sysfs, {
        nqn: `nqn.2000-02.com.mikrotik:${otherVolume}`,
        controllers: [{ state: "live" }],
        namespaces: [{ dev: "259:72" }],
      });
      const staging = join(n.base, "kubelet", "plugins", "go", "globalmount");
      expect(await n.client.node.NodeUnstageVolume({ volume_id: goVolume, staging_target_path: staging })).toEqual({});
      const calls = () =>
        existsSync(join(n.fake, "calls.log")) ? readFileSync(join(n.fake, "calls.log"), "utf8") : "";
      expect(calls()).toContain(`disconnect -n ${goNqn}`);
      // Ids the Go driver could not have made are left alone.
      expect(
        await n.client.node.NodeUnstageVolume({ volume_id: "some-other-volume", staging_target_path: staging }),
      ).toEqual({});
      expect(calls().trim().split("\n")).toHaveLength(1);
    } finally {
      if (n.child.pid) process.kill(n.child.pid, "SIGTERM");
      await n.exited;
      n.client.close();
    }
  }, 30_000);
});
