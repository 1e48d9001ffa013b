#!/usr/bin/env bun
/**
 * Node benchmarks (root; prints figures, asserts nothing):
 *   1. mountinfo parse of synthetic 10k / 100k tables next to `findmnt --raw -F` on the same file;
 *   2. a full stage+publish+unpublish+unstage cycle on loop devices, per RPC (time, time waiting on
 *      children, own time, child processes, mount-table reads, the commands run), next to the bare
 *      commands doing the same kernel work; the directories kubelet makes and removes around the RPCs
 *      are made and removed outside the timing, as kubelet does (see `kubelet` below);
 *   3. the same cycle through the compiled daemon over gRPC: JIT off as shipped, JIT on, log debug;
 *   4. the cost of one child: our runner next to a bare Bun.spawn and node spawn of `true`;
 *   5. idempotent NodeStage/NodePublish repeats with 1,000 extra mounts present (goal ≤ 5 ms).
 * Leaves the host as it found it (scripts/bench-cleanup.ts), interrupted or not.
 * Usage: bun scripts/bench-node.ts [--quick]
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, rmdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseMountinfo, readMountinfo } from "../src/mount/mountinfo.ts";
import { createLoopConnector } from "../src/node/loop-connector.ts";
import { profiled, profilingRunner, type RpcProfile } from "../src/runtime/rpc-profile.ts";
import { createRunner } from "../src/runtime/exec.ts";
import { silentLogger } from "../src/runtime/log.ts";
import { mountCap, nodeHarness } from "../test/node/harness.ts";
import { waitAnswering } from "../test/helpers/binary.ts";
import { hostState, own, releaseNow } from "./bench-cleanup.ts";

const quick = process.argv.includes("--quick");
const ms = (x: number) => `${x.toFixed(2)} ms`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p95 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))]!;
async function time(fn: () => unknown | Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

function syntheticMountinfo(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const mp =
      i % 7 === 0
        ? `/var/lib/kubelet/pods/p${i}/volumes/kubernetes.io~csi/pvc\\040with\\040space/mount`
        : `/var/lib/kubelet/pods/p${i}/volumes/kubernetes.io~csi/pvc-${i}/mount`;
    lines.push(`${100 + i} 1 259:${i % 512} / ${mp} rw,relatime shared:${i} - ext4 /dev/nvme${i % 64}n1 rw,seclabel`);
  }
  return lines.join("\n") + "\n";
}

/**
 * What kubelet does around the Node RPCs, outside the timed part (as the bare commands' mkdirs are):
 * it makes the staging dir before NodeStageVolume (pkg/volume/csi/csi_attacher.go MountDevice:
 * os.MkdirAll(deviceMountPath)) and removes it after NodeUnstageVolume (UnmountDevice: removeMountDir),
 * and makes only the target's parent before NodePublishVolume (csi_mounter.go SetUpAt:
 * os.MkdirAll(parentDir)); the driver makes and removes the target itself.
 */
const kubelet = {
  beforeStage: (staging: string, target: string) => {
    mkdirSync(staging, { recursive: true });
    mkdirSync(dirname(target), { recursive: true });
  },
  afterUnstage: (staging: string) => rmdirSync(staging),
};

const host = hostState();
const runner = profilingRunner(createRunner());
const log = silentLogger();
const h = nodeHarness({
  stormThreshold: 5_000,
  runner,
  connectors: {
    loop: createLoopConnector({ runner, log }),
    "nvme-tcp": {
      attach: async () => {
        throw new Error("unused");
      },
      find: async () => null,
      detach: async () => {},
    },
  },
});
own({ dir: h.base });
try {
  console.log("## mountinfo parse (median of runs)");
  for (const n of quick ? [10_000] : [10_000, 100_000]) {
    const text = syntheticMountinfo(n);
    const file = join(h.base, `mountinfo-${n}`);
    writeFileSync(file, text);
    const runs = n >= 100_000 ? 5 : 15;
    const ours: number[] = [],
      theirs: number[] = [];
    for (let i = 0; i < runs; i++) {
      ours.push(await time(() => parseMountinfo(text)));
      theirs.push(await time(() => execFileSync("findmnt", ["--raw", "-F", file], { maxBuffer: 1 << 30 })));
    }
    const ratio = median(ours) / median(theirs);
    console.log(
      `${n} entries: parseMountinfo ${ms(median(ours))}  findmnt --raw -F ${ms(median(theirs))}  ratio ${ratio.toFixed(2)} (goal ≤ 0.50)`,
    );
  }

  console.log(
    "\n## stage → publish → unpublish → unstage, ext4 on loop (formatted and used before: stage runs its read-only check)",
  );
  const cycles = quick ? 3 : 10;
  const RPCS = ["NodeStageVolume", "NodePublishVolume", "NodeUnpublishVolume", "NodeUnstageVolume"] as const;
  const perRpc = new Map<string, { ms: number[]; own: number[]; kids: number[]; profile?: RpcProfile }>(
    RPCS.map((r) => [r, { ms: [], own: [], kids: [] }]),
  );
  const cycleTimes: number[] = [];
  /** Wall time minus time waiting on children: the process's own work (parsing, records, logging, the event loop). */
  const cycleOwnTimes: number[] = [];
  const bareSteps = new Map<string, number[]>();
  const bareTimes: number[] = [];
  for (let i = 0; i < cycles; i++) {
    const id = `pvc-bench-${i}`;
    const file = h.backingFile(64 * 1024 * 1024);
    execFileSync("mkfs.ext4", ["-q", "-F", file]);
    const { staging, target } = h.paths(id);
    kubelet.beforeStage(staging, target);
    const requests: Record<(typeof RPCS)[number], object> = {
      NodeStageVolume: {
        volume_id: id,
        staging_target_path: staging,
        volume_capability: mountCap(),
        volume_context: { transport: "loop", backingFile: file },
      },
      NodePublishVolume: {
        volume_id: id,
        staging_target_path: staging,
        target_path: target,
        volume_capability: mountCap(),
        readonly: false,
      },
      NodeUnpublishVolume: { volume_id: id, target_path: target },
      NodeUnstageVolume: { volume_id: id, staging_target_path: staging },
    };
    let cycle = 0,
      cycleOwn = 0;
    for (const rpc of RPCS) {
      const slot = perRpc.get(rpc)!;
      let profile: RpcProfile | undefined;
      const took = await time(() =>
        profiled(
          () => h.service[rpc](requests[rpc]),
          (p) => {
            profile = p;
          },
        ),
      );
      slot.ms.push(took);
      slot.kids.push(profile!.childMs);
      slot.own.push(profile!.wallMs - profile!.childMs);
      slot.profile = profile;
      cycle += took;
      cycleOwn += profile!.wallMs - profile!.childMs;
    }
    cycleTimes.push(cycle);
    kubelet.afterUnstage(staging);
    cycleOwnTimes.push(cycleOwn);

    // Reference: the same kernel work as bare commands, without our checks.
    const s2 = staging + "-bare",
      t2 = target + "-bare";
    mkdirSync(s2, { recursive: true });
    mkdirSync(t2, { recursive: true });
    const step = (name: string, cmd: string, args: string[]) => {
      const t0 = performance.now();
      const out = execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
      (bareSteps.get(name) ?? bareSteps.set(name, []).get(name)!).push(performance.now() - t0);
      return out.trim();
    };
    const t0 = performance.now();
    const dev = step("losetup --find --show", "losetup", ["--find", "--show", file]);
    step("blkid -p", "blkid", ["-p", dev]);
    step("fsck.ext4 -n", "fsck.ext4", ["-n", dev]);
    step("mount", "mount", [dev, s2]);
    step("mount --bind", "mount", ["--bind", s2, t2]);
    step("umount (target)", "umount", [t2]);
    step("umount (staging)", "umount", [s2]);
    step("losetup -d", "losetup", ["-d", dev]);
    bareTimes.push(performance.now() - t0);
  }
  console.log(
    `${"RPC".padEnd(20)} ${"median".padStart(9)} ${"children".padStart(9)} ${"own".padStart(9)}  children  mount-table reads  commands (last run, ms each)`,
  );
  for (const [rpc, { ms: xs, kids, own, profile }] of perRpc) {
    const children = profile!.children.map((c) => `${c.command}(${c.ms.toFixed(1)})`).join(" ");
    console.log(
      `${rpc.padEnd(20)} ${ms(median(xs)).padStart(9)} ${ms(median(kids)).padStart(9)} ${ms(median(own)).padStart(9)}  ${String(profile!.children.length).padStart(8)}  ${String(profile!.mountTableReads).padStart(17)}  ${children}`,
    );
  }
  const childrenPerCycle = [...perRpc.values()].reduce((n, { profile }) => n + profile!.children.length, 0);
  console.log(`children per cycle: rds-csi ${childrenPerCycle}, bare commands ${bareSteps.size}`);
  console.log(`bare commands: ${[...bareSteps].map(([n, xs]) => `${n} ${ms(median(xs))}`).join(", ")}`);
  const ratio = median(cycleTimes) / median(bareTimes);
  console.log(
    `cycle: rds-csi median ${ms(median(cycleTimes))} (p95 ${ms(p95(cycleTimes))})   bare commands median ${ms(median(bareTimes))}   ratio ${ratio.toFixed(2)}× (goal ≤ 1.5×)`,
  );
  console.log(`own time per cycle (wall − waiting on children): median ${ms(median(cycleOwnTimes))}`);

  console.log(
    "\n## the same cycle through the compiled daemon (dist/rds-csi csi-node, gRPC over a unix socket), interleaved with the bare commands",
  );
  {
    // As shipped: the daemon re-executes itself with the JIT off (src/main.ts). BUN_JSC_useJIT=1 is the
    // operator's override: the difference is what the interpreter costs per cycle. The debug-log daemon
    // prints each RPC's profile (children_ms, own_ms) and shows what debug logging itself costs.
    const variants = [
      { name: "JIT off (as shipped), log info", env: {}, level: "info" },
      { name: "JIT on (BUN_JSC_useJIT=1), log info", env: { BUN_JSC_useJIT: "1" }, level: "info" },
      { name: "JIT off, log debug (rpc profile)", env: {}, level: "debug" },
    ];
    const bin = join(import.meta.dir, "..", "dist", "rds-csi");
    const daemons = variants.map((v, i) => {
      const sock = join(h.base, `daemon-${i}.sock`);
      const proc = Bun.spawn(
        [
          bin,
          "csi-node",
          "--nqn-prefix",
          "nqn.2000-02.com.mikrotik:pvc-",
          "--node-id",
          `bench-${i}`,
          "--state-dir",
          join(h.base, `daemon-state-${i}`),
          "--kubelet-dir",
          join(h.base, "kubelet"),
          "--file-dir",
          h.base,
          "--endpoint",
          `unix://${sock}`,
          "--log-level",
          v.level,
        ],
        { env: { PATH: process.env.PATH!, ...v.env }, stdin: "ignore", stdout: "pipe", stderr: "inherit" },
      );
      own({ pid: proc.pid, needle: "csi-node" });
      let out = "";
      void (async () => {
        for await (const chunk of proc.stdout) out += new TextDecoder().decode(chunk);
      })();
      return { ...v, sock, proc, output: () => out, ms: new Map<string, number[]>(), cycles: [] as number[] };
    });
    const clients = await Promise.all(daemons.map((d) => waitAnswering(`unix://${d.sock}`)));
    const bareCycles: number[] = [];
    const rounds = quick ? 4 : 12;
    for (let i = 0; i < rounds; i++) {
      for (const [k, d] of daemons.entries()) {
        const id = `pvc-daemon-${k}-${i}`;
        const file = h.backingFile(64 * 1024 * 1024);
        execFileSync("mkfs.ext4", ["-q", "-F", file]);
        const { staging, target } = h.paths(id);
        kubelet.beforeStage(staging, target);
        const cap = { mount: { fs_type: "ext4", mount_flags: [] }, access_mode: { mode: "SINGLE_NODE_WRITER" } };
        const calls: [string, () => Promise<unknown>][] = [
          [
            "NodeStageVolume",
            () =>
              clients[k]!.node.NodeStageVolume({
                volume_id: id,
                staging_target_path: staging,
                volume_capability: cap,
                volume_context: { transport: "loop", backingFile: file },
              }),
          ],
          [
            "NodePublishVolume",
            () =>
              clients[k]!.node.NodePublishVolume({
                volume_id: id,
                staging_target_path: staging,
                target_path: target,
                volume_capability: cap,
              }),
          ],
          ["NodeUnpublishVolume", () => clients[k]!.node.NodeUnpublishVolume({ volume_id: id, target_path: target })],
          [
            "NodeUnstageVolume",
            () => clients[k]!.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging }),
          ],
        ];
        let cycle = 0;
        for (const [rpc, call] of calls) {
          const took = await time(call);
          (d.ms.get(rpc) ?? d.ms.set(rpc, []).get(rpc)!).push(took);
          cycle += took;
        }
        d.cycles.push(cycle);
        kubelet.afterUnstage(staging);
      }
      const file = h.backingFile(64 * 1024 * 1024);
      execFileSync("mkfs.ext4", ["-q", "-F", file]);
      const s2 = join(h.base, `bare-staging-${i}`),
        t2 = join(h.base, `bare-target-${i}`);
      mkdirSync(s2);
      mkdirSync(t2);
      const run = (cmd: string, args: string[]) =>
        execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
      const t0 = performance.now();
      const dev = run("losetup", ["--find", "--show", file]);
      run("blkid", ["-p", dev]);
      run("fsck.ext4", ["-n", dev]);
      run("mount", [dev, s2]);
      run("mount", ["--bind", s2, t2]);
      run("umount", [t2]);
      run("umount", [s2]);
      run("losetup", ["-d", dev]);
      bareCycles.push(performance.now() - t0);
    }
    clients.forEach((c) => c.close());
    const bare = median(bareCycles);
    console.log(`bare commands: cycle median ${ms(bare)}`);
    for (const d of daemons) {
      const steps = [...d.ms].map(([rpc, xs]) => `${rpc.replace(/^Node|Volume$/g, "")} ${ms(median(xs))}`).join(", ");
      console.log(
        `${d.name.padEnd(36)} cycle median ${ms(median(d.cycles))}  ratio ${(median(d.cycles) / bare).toFixed(2)}×  (${steps})`,
      );
    }
    // The debug daemon's own account of each RPC, server side (no gRPC, no client).
    const profiles = new Map<string, { own: number[]; children: number[]; wall: number[] }>();
    for (const line of daemons[2]!.output().split("\n")) {
      if (!line.includes('"rpc profile"')) continue;
      const p = JSON.parse(line) as { op: string; own_ms?: number; children_ms?: number; duration_ms?: number };
      if (p.own_ms === undefined || p.children_ms === undefined || p.duration_ms === undefined)
        throw new Error("dist/rds-csi is older than this bench (its rpc profile has no own_ms): run scripts/build");
      const slot = profiles.get(p.op) ?? profiles.set(p.op, { own: [], children: [], wall: [] }).get(p.op)!;
      slot.own.push(p.own_ms);
      slot.children.push(p.children_ms);
      slot.wall.push(p.duration_ms);
    }
    for (const [op, p] of profiles)
      console.log(
        `  server side, ${op.padEnd(20)} handler ${ms(median(p.wall))} = children ${ms(median(p.children))} + own ${ms(median(p.own))}`,
      );
    for (const d of daemons) d.proc.kill("SIGTERM");
    await Promise.all(daemons.map((d) => d.proc.exited));
  }

  console.log("\n## one child: the runner (src/runtime/exec.ts) next to bare spawns of the same command, interleaved");
  {
    const bare = createRunner();
    const spawns: [string, () => Promise<unknown>][] = [
      ["Bun.spawn", () => Bun.spawn(["true"], { stdout: "pipe", stderr: "pipe" }).exited],
      [
        "node:child_process spawn",
        () => new Promise((done) => spawn("true", [], { stdio: ["ignore", "pipe", "pipe"] }).on("close", done)),
      ],
      ["runner", () => bare("true", [], { timeoutMs: 5_000 })],
    ];
    const spawnTimes = new Map<string, number[]>(spawns.map(([n]) => [n, []]));
    for (let i = 0; i < (quick ? 60 : 300); i++)
      for (const [name, fn] of spawns) spawnTimes.get(name)!.push(await time(fn));
    console.log(`true: ${[...spawnTimes].map(([n, xs]) => `${n} ${ms(median(xs))}`).join(", ")}`);
  }

  console.log("\n## idempotent repeats with 1,000 extra mounts present");
  const extra = join(h.base, "extra");
  for (let i = 0; i < 1_000; i++) {
    const d = join(extra, String(i));
    mkdirSync(d, { recursive: true });
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "bench", d]);
  }
  const id = "pvc-bench-repeat";
  const file = h.backingFile(64 * 1024 * 1024);
  const { staging, target } = h.paths(id);
  kubelet.beforeStage(staging, target);
  const stageReq = {
    volume_id: id,
    staging_target_path: staging,
    volume_capability: mountCap(),
    volume_context: { transport: "loop", backingFile: file },
  };
  const pubReq = {
    volume_id: id,
    staging_target_path: staging,
    target_path: target,
    volume_capability: mountCap(),
    readonly: false,
  };
  await h.service.NodeStageVolume(stageReq);
  await h.service.NodePublishVolume(pubReq);
  const reps = quick ? 20 : 100;
  const st: number[] = [],
    pu: number[] = [],
    mi: number[] = [];
  for (let i = 0; i < reps; i++) {
    st.push(await time(() => h.service.NodeStageVolume(stageReq)));
    pu.push(await time(() => h.service.NodePublishVolume(pubReq)));
    mi.push(await time(() => readMountinfo({ runner: h.runner, timeoutMs: 10_000 })));
  }
  console.log(
    `NodeStageVolume repeat median ${ms(median(st))} p95 ${ms(p95(st))}; NodePublishVolume repeat median ${ms(median(pu))} p95 ${ms(p95(pu))} (goal ≤ 5 ms)`,
  );
  console.log(
    `reference: one readMountinfo (child cat + parse) with ${(await readMountinfo({ runner: h.runner })).length} entries: median ${ms(median(mi))}`,
  );
  await h.service.NodeUnpublishVolume({ volume_id: id, target_path: target });
  await h.service.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
} finally {
  h.cleanup();
  releaseNow();
}
console.log(`\n${host.report()}`);
