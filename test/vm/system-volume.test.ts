/**
 * Scenario 3: a diskless node's system volumes, connected by hand and mounted outside the kubelet
 * tree: one outside the managed prefix (`…:nixos-…`) and one inside it. Nothing the driver does —
 * stage and unstage of other volumes, a stage naming the system NQN, gc --force, a crash and
 * restart of csi-node — ever disconnects or unmounts them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  Code,
  connectByHand,
  controllerStates,
  gc,
  mountCap,
  mountsAt,
  NQN_PREFIX,
  okValue,
  provision,
  rpc,
  seedExport,
  sh,
  startCluster,
  teardown,
  type Cluster,
} from "./harness.ts";

const S = "scenario3";
const OUTSIDE = "nqn.2000-02.com.mikrotik:nixos-node1-root";
const INSIDE = `${NQN_PREFIX}system-node1-nix-store`;
let c: Cluster;
const mounts: Record<string, string> = {};

beforeAll(async () => {
  c = await startCluster("system");
  for (const [slot, nqn] of [
    ["nixos-node1-root", OUTSIDE],
    ["system-node1-nix-store", INSIDE],
  ] as const) {
    seedExport(c, slot, nqn);
    const dev = await connectByHand(nqn);
    sh(["mkfs.ext4", "-q", dev.path]);
    mounts[nqn] = join(c.dir, "sys", slot);
    mkdirSync(mounts[nqn]!, { recursive: true });
    sh(["mount", dev.path, mounts[nqn]!]);
    sh(["sh", "-c", `echo precious > '${mounts[nqn]}/file' && sync`]);
  }
});
afterAll(async () => {
  for (const [nqn, mp] of Object.entries(mounts)) {
    sh(["umount", mp], { allowFail: true });
    sh(["nvme", "disconnect", "-n", nqn], { allowFail: true });
  }
  await c?.stop();
});

async function untouched() {
  for (const [nqn, mp] of Object.entries(mounts)) {
    expect(await controllerStates(nqn)).toEqual([expect.stringMatching(/:live$/)]);
    expect(mountsAt(mp).length).toBe(1);
    expect(sh(["cat", `${mp}/file`]).stdout.trim()).toBe("precious");
  }
}

describe("scenario 3: system volumes of a diskless node are never touched", () => {
  test("stage and unstage of a managed volume leave them alone", async () => {
    const v = await provision(c, S, "beside-system");
    await untouched();
    okValue(await teardown(c, S, v));
    await untouched();
  });

  test("a stage naming the system NQN inside the prefix is refused and connects nothing", async () => {
    const name = "pvc-vm-system-impostor";
    const r = await rpc(
      S,
      "NodeStageVolume(system NQN)",
      c.node.node.NodeStageVolume({
        volume_id: "pvc-00000000-0000-4000-8000-000000000003",
        staging_target_path: c.stagingPath(name),
        volume_capability: mountCap(),
        volume_context: { nqn: INSIDE, nvmeAddress: "127.0.0.1", nvmePort: "4420" },
        publish_context: {},
      }),
    );
    expect(r.code).toBe(Code.FAILED_PRECONDITION);
    expect(r.details).toContain(INSIDE);
    expect(mountsAt(c.stagingPath(name))).toEqual([]);
    await untouched();
  });

  test("gc --force collects nothing of theirs", () => {
    const plan = gc(c);
    expect(
      plan.candidates.map((x) => x.id).filter((id) => id.includes("system-node1") || id.includes("nixos-node1")),
    ).toEqual([]);
    const forced = gc(c, { force: true });
    expect(
      (forced.results ?? []).map((x) => x.id).filter((id) => id.includes("system-node1") || id.includes("nixos-node1")),
    ).toEqual([]);
    return untouched();
  });

  test("a crash (SIGKILL) and restart of csi-node leaves them alone", async () => {
    await c.restartNode("SIGKILL");
    okValue(await rpc(S, "Probe(after restart)", c.node.identity.Probe({}, { deadlineMs: 5_000 })));
    await untouched();
    const v = await provision(c, S, "after-restart");
    okValue(await teardown(c, S, v));
    await untouched();
  });
});
