/**
 * Scenario 6: doctor on the real sysfs and the real kernel log. Paths and controller states, system
 * vs managed classification, exit codes; and no exit 1 on a healthy node after an outage the
 * kernel recovered from (its reconnect lines and the "Property Set error: 880" a disconnect of a
 * reconnecting controller prints are not storage errors).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  connectByHand,
  controllerStates,
  doctor,
  GiB,
  mountCap,
  NVME_PORT,
  okValue,
  provision,
  rpc,
  seedExport,
  sh,
  startCluster,
  waitFor,
  type Cluster,
  type Staged,
} from "./harness.ts";

const S = "scenario6";
const SYSTEM_NQN = "nqn.2000-02.com.mikrotik:nixos-doctor-root";
let c: Cluster;
let v: Staged;
let systemMount = "";

beforeAll(async () => {
  c = await startCluster("doctor", { reconnectDelay: 2 });
  v = await provision(c, S, "doctor");
  seedExport(c, "nixos-doctor-root", SYSTEM_NQN);
  const dev = await connectByHand(SYSTEM_NQN, NVME_PORT, ["-c", "2"]);
  sh(["mkfs.ext4", "-q", dev.path]);
  systemMount = join(c.dir, "sysroot");
  mkdirSync(systemMount);
  sh(["mount", dev.path, systemMount]);
});
afterAll(async () => {
  c?.target.restorePort(NVME_PORT);
  if (systemMount) sh(["umount", systemMount], { allowFail: true });
  sh(["nvme", "disconnect", "-n", SYSTEM_NQN], { allowFail: true });
  await c?.stop();
});

const classes = (d: ReturnType<typeof doctor>) =>
  Object.fromEntries(
    (d.byClass("nvme_subsystems")!.details.subsystems as { nqn: string; class: string }[]).map((s) => [s.nqn, s.class]),
  );

describe("scenario 6: doctor on a real NVMe/TCP node", () => {
  test("healthy node: exit 0, the volume managed, the hand-mounted root a system volume, every path live", () => {
    const d = doctor(c);
    expect(
      d.report.findings
        .filter((f) => f.severity === "warning" || f.severity === "critical")
        .map((f) => `${f.class}: ${f.message}`),
    ).toEqual([]);
    expect(d.code).toBe(0);
    expect(classes(d)).toEqual({ [v.nqn]: "managed", [SYSTEM_NQN]: "system" });
    expect(d.byClass("nvme_paths_not_live")!.severity).toBe("ok");
  });

  test("target unreachable: the paths not live are named with their state, exit non-zero", async () => {
    c.target.removePort(NVME_PORT);
    await waitFor(
      "the controllers to leave live",
      async () => (await controllerStates(v.nqn)).every((s) => !s.endsWith(":live")),
      30_000,
    );
    const d = doctor(c);
    expect(d.code).not.toBe(0);
    const paths = d.byClass("nvme_paths_not_live")!;
    expect(paths.severity).toBe("warning");
    expect(paths.message).toContain(v.nqn);
    expect(paths.message).toMatch(/connecting|resetting/);
  });

  test("after the port returns and a reconnecting controller was disconnected: exit 0, reconnect lines not counted as errors", async () => {
    const started = Date.now();
    // A managed volume on its own port, connected by hand, whose port then disappears for good.
    const lost = okValue(
      await rpc(
        S,
        "CreateVolume",
        c.ctl.controller.CreateVolume({
          name: "pvc-vm-doctor-lost",
          capacity_range: { required_bytes: GiB },
          volume_capabilities: [mountCap()],
          parameters: { nvmePort: "4421" },
        }),
      ),
    ).volume;
    c.target.restorePort(NVME_PORT);
    // Both the volume and the hand-connected root: doctor must see a node whose outage is over.
    const allLive = async () =>
      (await Promise.all([v.nqn, SYSTEM_NQN].map(controllerStates))).every(
        (st) => st.length > 0 && st.every((s) => s.endsWith(":live")),
      );
    await waitFor("every controller to reconnect", allLive, 60_000);
    await connectByHand(lost.volume_context.nqn, 4421, ["-l", "-1", "-c", "2"]);
    c.target.removePort(4421);
    await waitFor(
      "the lost controller to leave live",
      async () => (await controllerStates(lost.volume_context.nqn)).every((s) => !s.endsWith(":live")),
      30_000,
    );
    sh(["nvme", "disconnect", "-n", lost.volume_context.nqn], { timeoutMs: 30_000 });
    const dmesg = sh(["dmesg"]).stdout;
    expect(dmesg).toContain("Reconnecting in");
    expect(dmesg).toContain("Property Set error: 880");
    const d = doctor(c, { kernelLogSince: started });
    expect(d.byClass("kernel_log_errors")!.severity).toBe("ok");
    expect(d.byClass("kernel_log_errors")!.details.reconnect_lines).toBeGreaterThan(0);
    expect(
      d.report.findings
        .filter((f) => f.severity === "warning" || f.severity === "critical")
        .map((f) => `${f.class}: ${f.message}`),
    ).toEqual([]);
    expect(d.code).toBe(0);
    okValue(await rpc(S, "DeleteVolume", c.ctl.controller.DeleteVolume({ volume_id: lost.volume_id })));
  });
});
