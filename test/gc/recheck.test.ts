import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { executePlan, freshPlanRecheck } from "../../src/gc/execute.ts";
import { gatherFacts, type FactDeps } from "../../src/gc/facts.ts";
import { plan } from "../../src/gc/plan.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { addSubsystem } from "../helpers/fake-sysfs.ts";
import { DRIVER, makeSandbox, PREFIX, sh, type Sandbox } from "./helpers.ts";

let sb: Sandbox | undefined;
afterEach(() => {
  sb?.cleanup();
  sb = undefined;
});

test("items that became mounted between plan and act are skipped, not collected", async () => {
  sb = makeSandbox();
  const s = sb;
  // A managed subsystem whose namespace is a real loop device, and a leaked loop device of the file backend.
  const ns = s.loop(join(s.other, "ns.img"));
  s.registerLoopInSysfs(ns.device, ns.dev);
  addSubsystem(s.sysfs, { nqn: `${PREFIX}race`, namespaces: [{ dev: ns.dev }] });
  const leaked = s.loop(join(s.files, "pvc-race.img"));
  s.registerLoopInSysfs(leaked.device, leaked.dev);

  const runner = createRunner();
  const deps: FactDeps = {
    runner,
    log: silentLogger(),
    policy: { prefix: PREFIX, protectedPatterns: [] },
    driverName: DRIVER,
    sysfsRoot: s.sysfs,
    procRoot: "/proc",
    kubeletDir: s.kubelet,
    stateDir: s.state,
    ownedFileDirs: [s.files],
    timeoutMs: 10_000,
    probeTimeoutMs: 5_000,
    slotPrefix: "pvc-",
    graceMs: 300_000,
  };
  const facts = await gatherFacts(deps);
  const p = plan(facts);
  expect(p.candidates.map((c) => `${c.kind} ${c.id}`).sort()).toEqual([
    `loop-device ${leaked.device}`,
    `nvme-subsystem ${PREFIX}race`,
  ]);

  // The world changes: someone mounts both devices.
  s.mount(ns.device, join(s.kubelet, "pods", "p1", "volumes", "kubernetes.io~csi", "pv1", "mount"));
  s.mount(leaked.device, join(s.root, "elsewhere"));

  const results = await executePlan(p.candidates, {
    runner,
    log: silentLogger(),
    stepTimeoutMs: 10_000,
    nvmeBin: s.nvmeBin,
    recheck: freshPlanRecheck(deps, facts.referenced),
  });
  expect(results.map((r) => r.status)).toEqual(["skipped", "skipped"]);
  expect(results.find((r) => r.kind === "nvme-subsystem")!.detail).toContain("mounted at");
  expect(results.find((r) => r.kind === "loop-device")!.detail).toContain("mounted at");
  expect(s.nvmeCalls()).toEqual([]);
  expect(
    sh("losetup", ["--list", "--noheadings", "--output", "NAME"])
      .split("\n")
      .map((x) => x.trim()),
  ).toContain(leaked.device);
}, 60_000);
