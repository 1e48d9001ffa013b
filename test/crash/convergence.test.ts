/**
 * Kill at every step, then retry: the compiled binary is killed with SIGKILL (what a container kill
 * or a power cut does) at each named step between the writes of a multi-step change (see
 * src/runtime/crash-points.ts), restarted, and the same requests are sent again. Every run must
 * converge: the retried requests succeed and nothing is left behind (files, mounts, loop devices,
 * records). The list of steps is not written here: a clean run records every step it reaches, and
 * each one becomes a kill point, so a step added to the code is tested without touching this file.
 *
 * The node is also killed together with its mkfs child in the middle of a format (a real mkfs
 * killed mid-write, for ext4 and xfs): the half-written filesystem is the driver's own.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import type { CsiClient } from "../../src/csi/client.ts";
import { releaseUnder } from "../helpers/release-under.ts";
import { ensureBinary, killAllSpawned, outcome, spawnBinary, waitAnswering, type Daemon } from "../helpers/binary.ts";

const GiB = 2 ** 30;
const dir = mkdtempSync("/tmp/rds-crash-");
const mountCap = (fs_type: string) => ({
  mount: { fs_type, mount_flags: [] },
  access_mode: { mode: "SINGLE_NODE_WRITER" },
});

beforeAll(() => ensureBinary());
afterAll(() => {
  killAllSpawned();
  releaseUnder(dir);
  rmSync(dir, { recursive: true, force: true });
});

/** Every (step, occurrence) a clean run of `work` reaches, in order. */
async function stepsOf(logFile: string): Promise<string[]> {
  const seen = new Map<string, number>();
  return readFileSync(logFile, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((name) => {
      const n = (seen.get(name) ?? 0) + 1;
      seen.set(name, n);
      return `${name}:${n}`;
    });
}

async function stop(d: Daemon) {
  if (d.proc.exitCode === null) d.proc.kill("SIGKILL");
  await d.proc.exited;
}

/** Files left in a directory tree (relative names), for "nothing left behind". */
function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1))
    .sort();
}

describe("controller (file backend): kill at every step, restart, retry", () => {
  const files = join(dir, "ctl-files");
  const sock = `unix://${dir}/ctl.sock`;
  const start = (env: Record<string, string> = {}) =>
    spawnBinary(
      [
        "csi-controller",
        "--backend",
        "file",
        "--file-dir",
        files,
        "--state-dir",
        join(dir, "ctl-state"),
        "--endpoint",
        sock,
        "--log-level",
        "warn",
      ],
      env,
    );

  /** Ids learnt along the way; a retry after a kill goes on from the call that died, as a CO would. */
  interface Progress {
    volumeId: string;
    snapshotId: string;
    restoredId: string;
  }

  /** Create, snapshot, restore, grow, delete all: each call must succeed, with the sizes asked for. */
  async function lifecycle(
    c: CsiClient,
    strict: boolean,
    from = 0,
    p: Progress = { volumeId: "", snapshotId: "", restoredId: "" },
  ): Promise<number | null> {
    const steps: [string, () => Promise<unknown>, (v: any) => void][] = [];
    let { volumeId, snapshotId, restoredId } = p;
    const keep = () => Object.assign(p, { volumeId, snapshotId, restoredId });
    steps.push([
      "CreateVolume",
      () =>
        c.controller.CreateVolume({
          name: "crash-a",
          capacity_range: { required_bytes: GiB },
          volume_capabilities: [mountCap("ext4")],
        }),
      (v) => {
        volumeId = v.volume.volume_id;
        expect(Number(v.volume.capacity_bytes)).toBe(GiB);
      },
    ]);
    steps.push([
      "CreateSnapshot",
      () => c.controller.CreateSnapshot({ name: "crash-snap", source_volume_id: volumeId }),
      (v) => {
        snapshotId = v.snapshot.snapshot_id;
        expect(v.snapshot.ready_to_use).toBe(true);
      },
    ]);
    steps.push([
      "CreateVolume from snapshot",
      () =>
        c.controller.CreateVolume({
          name: "crash-b",
          capacity_range: { required_bytes: GiB },
          volume_capabilities: [mountCap("ext4")],
          volume_content_source: { snapshot: { snapshot_id: snapshotId } },
        }),
      (v) => {
        restoredId = v.volume.volume_id;
        expect(Number(v.volume.capacity_bytes)).toBe(GiB);
      },
    ]);
    steps.push([
      "ControllerExpandVolume",
      () => c.controller.ControllerExpandVolume({ volume_id: volumeId, capacity_range: { required_bytes: 2 * GiB } }),
      (v) => expect(Number(v.capacity_bytes)).toBe(2 * GiB),
    ]);
    steps.push(["DeleteSnapshot", () => c.controller.DeleteSnapshot({ snapshot_id: snapshotId }), () => {}]);
    steps.push(["DeleteVolume b", () => c.controller.DeleteVolume({ volume_id: restoredId }), () => {}]);
    steps.push(["DeleteVolume a", () => c.controller.DeleteVolume({ volume_id: volumeId }), () => {}]);
    for (const [i, [name, call, check]] of steps.entries()) {
      if (i < from) continue;
      const r = await outcome(call());
      if (r.code !== 0) {
        if (strict) throw new Error(`${name} after the restart: code ${r.code} ${r.details}`);
        return i;
      }
      check(r.value);
      keep();
    }
    return null;
  }

  test("every step of create, snapshot, restore, expand and delete converges after a kill", async () => {
    const log = join(dir, "ctl-steps.log");
    const clean = start({ RDS_CSI_CRASH_POINTS_LOG: log });
    await lifecycle(await waitAnswering(sock, clean), true);
    await stop(clean);
    const steps = await stepsOf(log);
    expect(steps.length).toBeGreaterThanOrEqual(10);
    const converged: string[] = [];
    for (const step of steps) {
      const crashing = start({ RDS_CSI_CRASH_AT: step });
      const progress: Progress = { volumeId: "", snapshotId: "", restoredId: "" };
      const failedAt = await lifecycle(await waitAnswering(sock, crashing), false, 0, progress);
      await crashing.proc.exited;
      expect({ step, killed: crashing.proc.signalCode }).toEqual({ step, killed: "SIGKILL" });
      expect(failedAt).not.toBeNull();
      const again = start();
      await lifecycle(await waitAnswering(sock, again), true, failedAt!, progress);
      await stop(again);
      // Converged: everything deleted, nothing half-made or temporary left.
      expect({ step, left: filesUnder(files) }).toEqual({ step, left: [] });
      converged.push(step);
    }
    console.log(
      `controller: ${converged.length} of ${steps.length} kill points converged (${[...new Set(steps.map((s) => s.split(":")[0]))].join(", ")})`,
    );
    expect(converged).toEqual(steps);
  }, 300_000);
});

describe("node (loop, real mkfs and mounts): kill at every step, restart, retry", () => {
  const files = join(dir, "node-files");
  const kubelet = join(dir, "kubelet");
  const ctlSock = `unix://${dir}/nctl.sock`;
  const nodeSock = `unix://${dir}/node.sock`;
  const shims = join(dir, "shims");
  const midFormat = join(dir, "kill-mid-format");
  let ctl: Daemon;
  let controller: CsiClient;

  beforeAll(async () => {
    mkdirSync(kubelet, { recursive: true });
    mkdirSync(shims, { recursive: true });
    // While the marker exists, mkfs starts for real, then the node and mkfs are killed together mid-write.
    for (const tool of ["mkfs.ext4", "mkfs.xfs"]) {
      const real = Bun.which(tool);
      if (!real) throw new Error(`${tool} is not installed`);
      writeFileSync(
        join(shims, tool),
        `#!/bin/sh\nif [ -e '${midFormat}' ]; then\n  '${real}' "$@" & m=$!\n  sleep 0.15\n  kill -9 $PPID $m\n  exit 137\nfi\nexec '${real}' "$@"\n`,
      );
      chmodSync(join(shims, tool), 0o755);
    }
    ctl = spawnBinary([
      "csi-controller",
      "--backend",
      "file",
      "--file-dir",
      files,
      "--state-dir",
      join(dir, "nctl-state"),
      "--endpoint",
      ctlSock,
      "--log-level",
      "warn",
    ]);
    controller = await waitAnswering(ctlSock, ctl);
  });

  const startNode = (env: Record<string, string> = {}) =>
    spawnBinary(
      [
        "csi-node",
        "--nqn-prefix",
        "nqn.2000-02.com.mikrotik:pvc-",
        "--node-id",
        "crash-node",
        "--state-dir",
        join(dir, "node-state"),
        "--kubelet-dir",
        kubelet,
        "--file-dir",
        files,
        "--endpoint",
        nodeSock,
        "--host-nqn-file",
        join(dir, "no-hostnqn"),
        "--log-level",
        "warn",
      ],
      { PATH: `${shims}:${process.env.PATH}`, ...env },
    );

  /** Stage, publish read-only, unpublish, unstage: each must succeed. */
  async function nodeLifecycle(
    c: CsiClient,
    volume: { volume_id: string; volume_context: Record<string, string> },
    fs: string,
    strict: boolean,
  ) {
    const staging = join(kubelet, "plugins", "kubernetes.io", "csi", "rds", volume.volume_id, "globalmount");
    const target = join(kubelet, "pods", "pod-1", "volumes", "kubernetes.io~csi", volume.volume_id, "mount");
    const calls: [string, () => Promise<unknown>][] = [
      [
        "NodeStageVolume",
        () => c.node.NodeStageVolume({ ...volume, staging_target_path: staging, volume_capability: mountCap(fs) }),
      ],
      [
        "NodePublishVolume",
        () =>
          c.node.NodePublishVolume({
            volume_id: volume.volume_id,
            staging_target_path: staging,
            target_path: target,
            volume_capability: mountCap(fs),
            readonly: true,
          }),
      ],
      ["NodeUnpublishVolume", () => c.node.NodeUnpublishVolume({ volume_id: volume.volume_id, target_path: target })],
      [
        "NodeUnstageVolume",
        () => c.node.NodeUnstageVolume({ volume_id: volume.volume_id, staging_target_path: staging }),
      ],
    ];
    for (const [name, call] of calls) {
      const r = await outcome(call());
      if (r.code !== 0) {
        if (strict) throw new Error(`${name} after the restart: code ${r.code} ${r.details}`);
        return name;
      }
    }
    return null;
  }

  let n = 0;
  async function newVolume() {
    const r = await controller.controller.CreateVolume({
      name: `crash-node-${++n}`,
      capacity_range: { required_bytes: GiB },
      volume_capabilities: [mountCap("ext4")],
    });
    return {
      volume_id: r.volume.volume_id as string,
      volume_context: r.volume.volume_context as Record<string, string>,
    };
  }

  function leftovers(volumeId: string, backingFile: string) {
    const mounts = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((m) => m.startsWith(`${kubelet}/`));
    const loops = Bun.spawnSync(["losetup", "-j", backingFile]).stdout.toString().trim();
    const record = existsSync(join(dir, "node-state", "volumes", `${volumeId}.json`));
    return { mounts, loops, record };
  }

  test("every step of stage, publish, unpublish and unstage converges after a kill", async () => {
    const log = join(dir, "node-steps.log");
    const first = await newVolume();
    const clean = startNode({ RDS_CSI_CRASH_POINTS_LOG: log });
    expect(await nodeLifecycle(await waitAnswering(nodeSock, clean), first, "ext4", true)).toBeNull();
    await stop(clean);
    const steps = await stepsOf(log);
    expect(steps.length).toBeGreaterThanOrEqual(8);
    const converged: string[] = [];
    for (const step of steps) {
      const volume = await newVolume();
      const crashing = startNode({ RDS_CSI_CRASH_AT: step });
      const failedAt = await nodeLifecycle(await waitAnswering(nodeSock, crashing), volume, "ext4", false);
      await crashing.proc.exited;
      expect({ step, killed: crashing.proc.signalCode, failedAt: failedAt !== null }).toEqual({
        step,
        killed: "SIGKILL",
        failedAt: true,
      });
      const again = startNode();
      expect(await nodeLifecycle(await waitAnswering(nodeSock, again), volume, "ext4", true)).toBeNull();
      await stop(again);
      expect({ step, ...leftovers(volume.volume_id, volume.volume_context.backingFile!) }).toEqual({
        step,
        mounts: [],
        loops: "",
        record: false,
      });
      converged.push(step);
    }
    console.log(
      `node: ${converged.length} of ${steps.length} kill points converged (${[...new Set(steps.map((s) => s.split(":")[0]))].join(", ")})`,
    );
    expect(converged).toEqual(steps);
  }, 300_000);

  for (const fs of ["ext4", "xfs"]) {
    test(`killed together with its mkfs.${fs} child mid-format: the retry formats again and converges (×3)`, async () => {
      for (let i = 0; i < 3; i++) {
        const volume = await newVolume();
        writeFileSync(midFormat, "");
        const crashing = startNode();
        const failedAt = await nodeLifecycle(await waitAnswering(nodeSock, crashing), volume, fs, false);
        await crashing.proc.exited;
        rmSync(midFormat);
        expect({ failedAt, killed: crashing.proc.signalCode }).toEqual({
          failedAt: "NodeStageVolume",
          killed: "SIGKILL",
        });
        const record = JSON.parse(readFileSync(join(dir, "node-state", "volumes", `${volume.volume_id}.json`), "utf8"));
        expect(record.formatting?.fs_type).toBe(fs);
        const again = startNode();
        expect(await nodeLifecycle(await waitAnswering(nodeSock, again), volume, fs, true)).toBeNull();
        await stop(again);
        expect(leftovers(volume.volume_id, volume.volume_context.backingFile!)).toEqual({
          mounts: [],
          loops: "",
          record: false,
        });
      }
    }, 120_000);
  }

  test("a device holding data this node never started formatting is still refused", async () => {
    const volume = await newVolume();
    // Foreign data: random bytes at the start of the disk, no record of a format by us.
    const f = Bun.spawnSync([
      "dd",
      "if=/dev/urandom",
      `of=${volume.volume_context.backingFile}`,
      "bs=1M",
      "count=4",
      "conv=notrunc",
    ]);
    expect(f.exitCode).toBe(0);
    const node = startNode();
    const c = await waitAnswering(nodeSock, node);
    const staging = join(kubelet, "plugins", "kubernetes.io", "csi", "rds", volume.volume_id, "globalmount");
    const r = await outcome(
      c.node.NodeStageVolume({ ...volume, staging_target_path: staging, volume_capability: mountCap("ext4") }),
    );
    expect(r.code).toBe(9);
    expect(r.details).toContain("refusing to format");
    const blkid = Bun.spawnSync(["blkid", "-p", volume.volume_context.backingFile!]);
    expect(blkid.stdout.toString()).not.toContain("ext4");
    await c.node.NodeUnstageVolume({ volume_id: volume.volume_id, staging_target_path: staging });
    await stop(node);
  }, 60_000);
});
