import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Disk } from "../../src/backends/backend.ts";
import { findOrphans } from "../../src/backends/orphans.ts";
import { globToRegExp, nqnPrefixProblem } from "../../src/config/nqn.ts";
import { withDiskList } from "../../src/gc/facts.ts";
import { executePlan } from "../../src/gc/execute.ts";
import { plan } from "../../src/gc/plan.ts";
import type { Candidate, GcFacts } from "../../src/gc/types.ts";
import type { MountEntry } from "../../src/mount/mountinfo.ts";
import type { NvmeSubsystem } from "../../src/nvme/sysfs.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import type { StagingRecord } from "../../src/gc/records.ts";
import type { Backend } from "../../src/backends/backend.ts";

/**
 * Random node states (incident 1: an orphan cleaner that disconnected the node's own /var). Whatever
 * the prefix, the protected patterns and the system mounts, no candidate and no issued disconnect
 * may be outside the prefix, protected, or backing a mount outside the kubelet tree. The checks
 * below restate the rules independently of classifyNqn.
 */

function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const word = (n = 6) => Array.from({ length: 1 + int(n) }, () => pick("abcdef0123456789-".split(""))).join("");
  return { next, int, pick, word };
}

const DOMAINS = ["nqn.2000-02.com.mikrotik", "nqn.2014-08.org.nvmexpress", "nqn.2019-10.io.example"];
const KUBELET = "/var/lib/kubelet";
const SYSTEM_POINTS = ["/", "/nix", "/var", "/home", "/var/lib/kubelet", "/boot", "/var/lib/rds-csi"];

interface Tree {
  facts: GcFacts;
  prefix: string;
  protectedPatterns: string[];
  /** NQNs with a namespace mounted outside the kubelet tree, computed by the test itself. */
  systemByTest: Set<string>;
  allNqns: string[];
}

let mountId = 0;
function mount(dev: string, mountPoint: string): MountEntry {
  const [major, minor] = dev.split(":").map(Number) as [number, number];
  mountId++;
  return {
    id: mountId,
    parentId: 1,
    major,
    minor,
    dev,
    root: "/",
    mountPoint,
    options: "rw",
    optionalFields: [],
    fsType: "ext4",
    source: "/dev/x",
    superOptions: "rw",
  };
}

async function randomTree(seed: number): Promise<Tree> {
  const r = rng(seed);
  let prefix = "";
  do prefix = `${r.pick(DOMAINS)}:${r.pick(["pvc-", "k8s-", "csi-", "p", "pvc-a", ""])}${r.word(2)}`;
  while (nqnPrefixProblem(prefix));
  const nqns = new Set<string>();
  const count = 1 + r.int(12);
  for (let i = 0; i < count; i++) {
    const shape = r.int(5);
    nqns.add(
      shape === 0
        ? `${r.pick(DOMAINS)}:nixos-${r.word()}`
        : shape === 1
          ? `${r.pick(DOMAINS)}:${r.word()}`
          : `${prefix}${r.word()}`,
    );
  }
  const allNqns = [...nqns];
  const protectedPatterns: string[] = [];
  for (let i = r.int(4); i > 0; i--) {
    const k = r.int(3);
    protectedPatterns.push(
      k === 0 ? r.pick(allNqns) : k === 1 ? `${prefix}${r.word(1)}*` : `${r.pick(DOMAINS)}:nixos-*`,
    );
  }
  let minor = 0;
  const subsystems: NvmeSubsystem[] = allNqns.map((nqn, i) => ({
    name: `nvme-subsys${i}`,
    nqn,
    controllers: [],
    namespaces: Array.from({ length: r.int(3) }, (_, j) => ({ name: `nvme${i}n${j + 1}`, dev: `259:${minor++}` })),
  }));
  const mounts: MountEntry[] = [];
  const systemByTest = new Set<string>();
  const records: StagingRecord[] = [];
  for (const s of subsystems) {
    for (const ns of s.namespaces) {
      const where = r.int(4);
      if (where === 0) {
        const point = r.pick(SYSTEM_POINTS);
        mounts.push(mount(ns.dev, point));
        systemByTest.add(s.nqn);
      } else if (where === 1) {
        const staging = `${KUBELET}/plugins/kubernetes.io/csi/rds.csi.srvlab.io/${r.word()}/globalmount`;
        mounts.push(mount(ns.dev, staging));
      }
    }
    if (r.int(3) === 0) {
      const id = `pvc-${r.word()}`;
      records.push({
        volume_id: id,
        transport: "nvme-tcp",
        nqn: s.nqn,
        staging_path: `${KUBELET}/x/${id}`,
        access_type: r.pick(["mount", "block"] as const),
        staged_at: "2026-01-01T00:00:00Z",
        path: `/state/volumes/${id}.json`,
      });
    }
  }
  const now = Date.now();
  const disks: Disk[] = allNqns.map((nqn, i) => ({
    id: `pvc-disk${i}`,
    sizeBytes: 1 << 30,
    filePath: `/pool/pvc-disk${i}.img`,
    nqn,
    exported: true,
    allowedHosts: r.int(4) === 0 ? ["nqn.host"] : [],
    copying: false,
    createdAt: now - r.int(3_600_000),
    meta: {},
  }));
  const referenced = new Set(disks.filter(() => r.int(2) === 0).map((d) => d.id));
  const graceMs = 5 * 60_000;
  const backend = withDiskList(
    { kind: "routeros", address: "sim", strayFiles: async () => [] } as unknown as Backend,
    disks,
  );
  const orphans = await findOrphans(backend, { referencedVolumeIds: referenced, slotPrefix: "pvc-", graceMs, now });
  const facts: GcFacts = {
    now,
    policy: { prefix, protectedPatterns },
    driverName: "rds.csi.srvlab.io",
    kubeletDir: KUBELET,
    stateDir: "/var/lib/rds-csi",
    ownedFileDirs: [],
    subsystems,
    systemNqns: systemByTest,
    mounts,
    blockDevs: new Set(subsystems.flatMap((s) => s.namespaces.map((n) => n.dev))),
    loopDevices: [],
    stackedDevs: new Map(),
    loopHolders: new Map(),
    records,
    unreadableRecords: [],
    probes: new Map(),
    volDataMounts: new Set(),
    backend: { state: "ok", address: "sim", disks, orphans },
    referenced: { state: "known", source: "test", volumeIds: referenced },
  };
  return { facts, prefix, protectedPatterns, systemByTest, allNqns };
}

/** The rule, restated: inside the prefix, no protected pattern, not backing a system mount. */
function mayTouch(t: Tree, nqn: string): boolean {
  return (
    nqn.startsWith(t.prefix) && !t.protectedPatterns.some((p) => globToRegExp(p).test(nqn)) && !t.systemByTest.has(nqn)
  );
}

const nqnOf = (c: Candidate) =>
  c.action.type === "nvme-disconnect" ? c.action.nqn : c.action.type === "delete-disk" ? c.action.nqn : undefined;

const dir = mkdtempSync(join(tmpdir(), "rds-csi-gc-prop-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the NQN gate holds on random trees", () => {
  test("plan never proposes a subsystem or disk outside the gate", async () => {
    let candidatesSeen = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const t = await randomTree(seed);
      const p = plan(t.facts);
      for (const c of p.candidates) {
        const nqn = nqnOf(c);
        if (nqn === undefined) continue;
        candidatesSeen++;
        if (!mayTouch(t, nqn))
          throw new Error(
            `seed ${seed}: ${c.kind} ${nqn} proposed although outside the gate (prefix ${t.prefix}, protected ${t.protectedPatterns.join(",")})`,
          );
      }
      // Every subsystem outside the gate is listed as skipped, with a reason.
      for (const nqn of t.allNqns.filter((n) => !mayTouch(t, n))) {
        expect(p.skipped.some((s) => s.id === nqn && s.reason.length > 0)).toBe(true);
      }
    }
    // The generator must produce real candidates, or the property would hold vacuously.
    expect(candidatesSeen).toBeGreaterThan(200);
  }, 60_000);

  test("execute, given the plan plus forged disconnects of untouchable NQNs, only ever runs nvme for NQNs inside the gate", async () => {
    const log = join(dir, "nvme.log");
    const bin = join(dir, "nvme");
    writeFileSync(bin, `#!/bin/sh\necho "$*" >> '${log}'\n`);
    chmodSync(bin, 0o755);
    const runner = createRunner();
    let issued = 0;
    for (let seed = 1; seed <= 120; seed++) {
      if (existsSync(log)) rmSync(log);
      const t = await randomTree(seed);
      const planned = plan(t.facts).candidates.filter((c) => c.action.type === "nvme-disconnect");
      const forged: Candidate[] = t.allNqns
        .filter((n) => !mayTouch(t, n))
        .map((nqn) => ({
          kind: "nvme-subsystem",
          id: nqn,
          reason: "forged",
          action: { type: "nvme-disconnect", nqn },
        }));
      const results = await executePlan([...forged, ...planned], {
        runner,
        log: silentLogger(),
        stepTimeoutMs: 5_000,
        nvmeBin: bin,
        recheck: async () => ({ ok: true, facts: t.facts }),
      });
      const calls = existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : [];
      for (const call of calls) {
        const nqn = call.replace(/^disconnect -n /, "");
        if (!mayTouch(t, nqn)) throw new Error(`seed ${seed}: nvme ${call} issued outside the gate`);
      }
      expect(calls.length).toBe(planned.length);
      expect(results.slice(0, forged.length).every((r) => r.status === "skipped")).toBe(true);
      issued += calls.length;
    }
    expect(issued).toBeGreaterThan(50);
  }, 120_000);
});
