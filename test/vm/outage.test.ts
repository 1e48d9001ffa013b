/**
 * Scenario 5: the target's port disappears under a published volume (the RDS unreachable) with the
 * default ctrl_loss_tmo=-1 (reconnect forever). Stats turn abnormal naming the controller state,
 * Probe stays fast, I/O issued during the outage completes once the port is back, stats are healthy
 * again; an unstage during an outage fails within its deadline and the process keeps answering.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  Code,
  controllerStates,
  directSha,
  NVME_PORT,
  okValue,
  provision,
  rpc,
  sh,
  startCluster,
  teardown,
  waitFor,
  type Cluster,
  type Staged,
} from "./harness.ts";

const S = "scenario5";
let c: Cluster;
let v: Staged;
/** Fails a test instead of letting an RPC run on: the stats probe's own deadline is 5 s. */
const STATS_DEADLINE_MS = 8_000;

beforeAll(async () => {
  // Short mount deadline: an umount stuck behind a dead target must come back as an error quickly.
  c = await startCluster("outage", { reconnectDelay: 2, nodeFlags: ["--mount-timeout", "5s"] });
  v = await provision(c, S, "outage");
  sh([
    "dd",
    "if=/dev/urandom",
    `of=${v.target}/before`,
    "bs=1M",
    "count=2",
    "oflag=direct",
    "conv=fsync",
    "status=none",
  ]);
});
afterAll(async () => {
  c?.target.restorePort(NVME_PORT);
  await c?.stop();
});

const stats = () =>
  rpc(
    S,
    "NodeGetVolumeStats",
    c.node.node.NodeGetVolumeStats({ volume_id: v.volumeId, volume_path: v.target }, { deadlineMs: STATS_DEADLINE_MS }),
  );
const notLive = async () => (await controllerStates(v.nqn)).every((s) => !s.endsWith(":live"));

describe("scenario 5: outage of the target under a published volume (ctrl_loss_tmo=-1)", () => {
  test("port removed: stats abnormal naming the controller state, within the probe deadline; Probe stays fast", async () => {
    expect(okValue(await stats()).volume_condition.abnormal).toBe(false);
    c.target.removePort(NVME_PORT);
    await waitFor("the controller to leave live", notLive, 30_000);
    const states = await controllerStates(v.nqn);
    const r = okValue(await stats());
    expect(r.volume_condition.abnormal).toBe(true);
    expect(r.volume_condition.message).toContain(states[0]!.split(":")[1]!);
    expect(r.volume_condition.message).toContain(states[0]!.split(":")[0]!);
    okValue(await rpc(S, "Probe(node, outage)", c.node.identity.Probe({}, { deadlineMs: 2_000 })));
  });

  test("I/O issued during the outage waits, completes after the port returns; stats healthy again", async () => {
    sh(["dd", "if=/dev/urandom", `of=${c.dir}/during`, "bs=1M", "count=1", "status=none"]);
    const want = sh(["sha256sum", `${c.dir}/during`]).stdout.split(" ")[0]!;
    const writer = Bun.spawn(
      ["dd", `if=${c.dir}/during`, `of=${v.target}/during`, "bs=1M", "oflag=direct", "conv=fsync", "status=none"],
      { stdout: "ignore", stderr: "pipe" },
    );
    await Bun.sleep(3_000);
    expect(writer.exitCode).toBeNull(); // still waiting on the dead transport
    c.target.restorePort(NVME_PORT);
    await waitFor(
      "the controller to reconnect",
      async () => (await controllerStates(v.nqn)).some((s) => s.endsWith(":live")),
      60_000,
    );
    const code = await Promise.race([writer.exited, Bun.sleep(60_000).then(() => "still blocked")]);
    expect(code).toBe(0);
    expect(directSha(`${v.target}/during`)).toBe(want);
    const r = okValue(await stats());
    expect(r.volume_condition).toEqual({ abnormal: false, message: "healthy" });
  });

  test("unstage during an outage fails within its deadline; the process keeps answering; after the port returns it succeeds", async () => {
    c.target.removePort(NVME_PORT);
    await waitFor("the controller to leave live", notLive, 30_000);
    // Unpublish is a bind unmount and succeeds; unstage's umount needs the journal written and cannot finish.
    const r = await teardown(c, S, v, 60_000);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe(4); // DEADLINE_EXCEEDED would mean the node itself ran past the CO's deadline
    okValue(await rpc(S, "Probe(node, stuck umount)", c.node.identity.Probe({}, { deadlineMs: 2_000 })));
    // The umount child could not be killed (D state): no more mount work until it is gone.
    const again = await rpc(
      S,
      "NodeUnstageVolume(umount stuck)",
      c.node.node.NodeUnstageVolume({ volume_id: v.volumeId, staging_target_path: v.staging }, { deadlineMs: 10_000 }),
    );
    expect(again.code).toBe(Code.UNAVAILABLE);
    expect(again.details).toContain("could not be killed");
    c.target.restorePort(NVME_PORT);
    await waitFor(
      "the controller to reconnect",
      async () => (await controllerStates(v.nqn)).some((s) => s.endsWith(":live")),
      60_000,
    );
    await waitFor(
      "the unstage to succeed on retry",
      async () => {
        const again = await rpc(
          S,
          "NodeUnstageVolume(retry)",
          c.node.node.NodeUnstageVolume({ volume_id: v.volumeId, staging_target_path: v.staging }),
        );
        return again.code === 0;
      },
      90_000,
      3_000,
    );
    expect(await controllerStates(v.nqn)).toEqual([]);
  });
});
