import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createProbeRegistry } from "../../src/mount/probe.ts";
import { createLoopConnector } from "../../src/node/loop-connector.ts";
import { createNodeService, type NodeServiceDeps } from "../../src/node/service.ts";
import { stagingRecords } from "../../src/node/staging-records.ts";
import { createBreakerRegistry } from "../../src/runtime/breakers.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { createKeyLock } from "../../src/runtime/key-lock.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import type { Connector } from "../../src/node/connector.ts";
import { kubeletPaths } from "../../src/node/kubelet-paths.ts";
import type { RpcContext, RpcHandler } from "../../src/csi/handler.ts";
import type { Logger } from "../../src/runtime/log.ts";

type Direct<S> = {
  [K in keyof S]: S[K] extends RpcHandler<infer R> ? (req?: unknown, ctx?: RpcContext) => Promise<R> : S[K];
};

/**
 * The handlers called the way the CSI server calls them, minus gRPC: each call gets its own context
 * (a log naming the RPC, a signal nobody aborts) unless the test passes one.
 */
export function directCalls<S extends Record<string, RpcHandler>>(handlers: S, log: Logger): Direct<S> {
  const out: Record<string, (req?: unknown, ctx?: RpcContext) => Promise<unknown>> = {};
  for (const [method, handler] of Object.entries(handlers)) {
    out[method] = (req = {}, ctx = { log: log.child({ op: method }), method, signal: new AbortController().signal }) =>
      handler(req, ctx);
  }
  return out as Direct<S>;
}

/** A node service over real loop devices, mkfs, mount and probes, rooted in a private temp dir. */
export function nodeHarness(over: Partial<NodeServiceDeps> = {}) {
  const base = mkdtempSync(join(tmpdir(), "rds-node-"));
  // One runner for everything the service runs (a profiling runner from a bench sees the path checks too).
  const runner = over.runner ?? createRunner();
  const log = silentLogger();
  const probes = createProbeRegistry({ timeoutMs: 2_000, log });
  const loop = createLoopConnector({ runner, log });
  const unusable: Connector = {
    attach: async () => {
      throw new Error("nvme-tcp not used in this test");
    },
    find: async () => null,
    detach: async () => {},
  };
  const deps: NodeServiceDeps = {
    runner,
    log,
    nodeName: "node-a",
    hostNqn: "nqn.2014-08.org.nvmexpress:uuid:node-a",
    maxVolumes: 0,
    connectors: { loop, "nvme-tcp": unusable },
    records: stagingRecords(join(base, "state")),
    breakers: createBreakerRegistry({ threshold: 3, initialOpenMs: 60_000 }),
    locks: createKeyLock(),
    probes,
    procRoot: "/proc",
    stormThreshold: 100,
    stormTotal: 20_000,
    timeouts: { probeMs: 2_000 },
    paths: kubeletPaths({ kubeletDir: join(base, "kubelet"), runner, log, timeoutMs: 5_000 }),
    fileDir: base,
    ...over,
  };
  const service = directCalls(createNodeService(deps), deps.log);
  let n = 0;

  /** A sparse backing file (zeros) for a new volume. */
  function backingFile(sizeBytes: number): string {
    const f = join(base, `vol-${++n}.img`);
    execFileSync("truncate", ["-s", String(sizeBytes), f]);
    return f;
  }
  const paths = (id: string) => ({
    staging: join(base, "kubelet", "plugins", id, "globalmount"),
    target: join(base, "kubelet", "pods", "pod-1", id, "mount"),
  });
  mkdirSync(join(base, "kubelet", "plugins"), { recursive: true });

  /** Leaves nothing behind: every mount below base, then every loop device backed by our files. */
  function cleanup() {
    probes.close();
    const mine = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((mp) => mp.startsWith(base + "/"))
      .reverse();
    for (const mp of mine) {
      try {
        execFileSync("umount", ["-l", mp], { stdio: "ignore" });
      } catch {
        /* gone */
      }
    }
    const loops = execFileSync("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"], {
      encoding: "utf8",
    });
    for (const line of loops.split("\n")) {
      const [dev, file] = line.trim().split(/\s+/);
      if (dev && file?.startsWith(base + "/")) {
        try {
          execFileSync("losetup", ["-d", dev], { stdio: "ignore" });
        } catch {
          /* gone */
        }
      }
    }
    rmSync(base, { recursive: true, force: true });
  }
  return { base, deps, service, runner, probes, backingFile, paths, cleanup };
}

export const mountCap = (fs_type = "ext4", mode = "SINGLE_NODE_WRITER", mount_flags: string[] = []) => ({
  access_type: "mount",
  mount: { fs_type, mount_flags },
  access_mode: { mode },
});
export const blockCap = (mode = "SINGLE_NODE_WRITER") => ({ access_type: "block", block: {}, access_mode: { mode } });

export function mountsAt(path: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => l.split(" ")[4] === path);
}
