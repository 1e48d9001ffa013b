import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { classifyNqn } from "../../src/config/nqn.ts";
import { createNvmeTcpConnector } from "../../src/nvme/nvme-tcp-connector.ts";
import { findNamespaceByNqn, lookupNqn } from "../../src/nvme/sysfs.ts";
import { createRunner, type Runner } from "../../src/runtime/exec.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import type { VolumeTarget } from "../../src/node/connector.ts";
import { makeFakeSysfs, orphan, renumber } from "../helpers/fake-sysfs.ts";

const FAKE_NVME = join(import.meta.dir, "..", "helpers", "fake-nvme");
const PREFIX = "nqn.2000-02.com.mikrotik:pvc-";
const PVC = `${PREFIX}0b7c0a7e-1111-4c4c-9d9d-000000000001`;
let dirs: string[] = [];
afterEach(() => {
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
  dirs = [];
});

function setup(
  opts: { protectedPatterns?: string[]; systemNqns?: string[]; connectMs?: number; settleMs?: number } = {},
) {
  const base = mkdtempSync(join(tmpdir(), "rds-nvme-"));
  dirs.push(base);
  const sysfs = join(base, "sys");
  const state = join(base, "fake");
  require("node:fs").mkdirSync(state);
  makeFakeSysfs(sysfs, []);
  const real = createRunner();
  const calls: string[][] = [];
  const runner: Runner = (cmd, args, o) => {
    calls.push([cmd, ...args]);
    return real(cmd, args, {
      ...o,
      env: { ...o.env, FAKE_NVME_DIR: state, FAKE_SYSFS_ROOT: sysfs, BUN_BIN: process.execPath },
    });
  };
  const policy = { prefix: PREFIX, protectedPatterns: opts.protectedPatterns ?? [] };
  const connector = createNvmeTcpConnector({
    runner,
    log: silentLogger(),
    sysfsRoot: sysfs,
    devRoot: "/fake-dev",
    policy,
    nvmeBin: FAKE_NVME,
    hostNqn: "nqn.2014-08.org.nvmexpress:uuid:host-1",
    systemNqns: async () => new Set(opts.systemNqns ?? []),
    timeouts: { connectMs: opts.connectMs ?? 10_000, deviceSettleMs: opts.settleMs ?? 1_500, pollMs: 50 },
  });
  const mode = (name: string, value: string) => writeFileSync(join(state, name), value);
  const fakeCalls = () =>
    existsSync(join(state, "calls.log"))
      ? readFileSync(join(state, "calls.log"), "utf8").trim().split("\n").filter(Boolean)
      : [];
  return { sysfs, state, connector, calls, mode, fakeCalls, policy };
}

const vol = (nqn = PVC, extra: Partial<VolumeTarget> = {}): VolumeTarget => ({
  volumeId: "pvc-1",
  transport: "nvme-tcp",
  nqn,
  address: "10.42.0.1",
  port: 4420,
  ctrlLossTmo: -1,
  reconnectDelay: 5,
  keepAliveTmo: 0,
  ...extra,
});

describe("nvme-tcp connector", () => {
  test("connects with the Go driver's flags and finds the device by NQN", async () => {
    const s = setup();
    s.mode("connect-dev", "259:42");
    const d = await s.connector.attach(vol(PVC, { keepAliveTmo: 7, ctrlLossTmo: 600, reconnectDelay: 3 }));
    expect(d).toEqual({ devicePath: "/fake-dev/nvme0n1", dev: "259:42", sizeBytes: 1 << 30 });
    expect(s.fakeCalls()).toEqual([
      `connect -t tcp -a 10.42.0.1 -s 4420 -n ${PVC} -l 600 -c 3 -k 7 -q nqn.2014-08.org.nvmexpress:uuid:host-1`,
    ]);
    // A second attach finds it without connecting again.
    expect(await s.connector.attach(vol())).toEqual(d);
    expect(s.fakeCalls().length).toBe(1);
  });

  test("'already connected' from nvme-cli is success", async () => {
    const s = setup();
    s.mode("connect-mode", "already");
    s.mode("connect-dev", "259:8");
    const d = await s.connector.attach(vol());
    expect(d.dev).toBe("259:8");
    expect(s.fakeCalls().length).toBe(1);
  });

  test("a hanging connect is killed at its deadline and reported UNAVAILABLE", async () => {
    const s = setup({ connectMs: 500 });
    s.mode("connect-mode", "hang");
    const started = performance.now();
    const err = await s.connector.attach(vol()).catch((e) => e);
    expect(err.kind).toBe("unavailable");
    expect(err.message).toContain("did not finish within 500 ms");
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  test("renumbering after a reconnect is followed, never a remembered path", async () => {
    const s = setup();
    makeFakeSysfs(s.sysfs, [{ nqn: "nqn.2000-02.com.mikrotik:nixos-root" }]);
    s.mode("connect-dev", "259:50");
    const first = await s.connector.attach(vol());
    expect(first.devicePath).toBe("/fake-dev/nvme1n1");
    const moved = renumber(s.sysfs, PVC);
    const again = await s.connector.find(vol());
    expect(again?.devicePath).toBe(`/fake-dev/${moved.namespaces[0]}`);
    expect(again?.devicePath).not.toBe(first.devicePath);
    expect(again?.dev).toBe("259:50");
  });

  test("orphaned subsystem: disconnect and reconnect once", async () => {
    const s = setup();
    makeFakeSysfs(s.sysfs, [{ nqn: PVC }]);
    orphan(s.sysfs, PVC);
    expect((await lookupNqn(s.sysfs, PVC)).state).toBe("orphaned");
    const d = await s.connector.attach(vol());
    expect(d.devicePath).toMatch(/^\/fake-dev\/nvme\d+n1$/);
    expect(s.fakeCalls().map((l) => l.split(" ")[0])).toEqual(["disconnect", "connect"]);
  });

  test("connected but no device ever: reconnects once, then fails and leaves the connection", async () => {
    const s = setup({ settleMs: 300 });
    s.mode("connect-mode", "no-device");
    const err = await s.connector.attach(vol()).catch((e) => e);
    expect(err.kind).toBe("unavailable");
    expect(err.message).toContain("left in place");
    expect(s.fakeCalls().map((l) => l.split(" ")[0])).toEqual(["connect", "disconnect", "connect"]);
    expect((await lookupNqn(s.sysfs, PVC)).state).toBe("orphaned");
  });

  test("an orphaned system or protected subsystem is never disconnected", async () => {
    for (const opts of [{ systemNqns: [PVC] }, { protectedPatterns: [`${PREFIX}0b7c*`] }]) {
      const s = setup(opts);
      makeFakeSysfs(s.sysfs, [{ nqn: PVC }]);
      orphan(s.sysfs, PVC);
      const err = await s.connector.attach(vol()).catch((e) => e);
      expect(err.kind).toBe("failed-precondition");
      const err2 = await s.connector.detach(vol()).catch((e) => e);
      expect(err2.kind).toBe("failed-precondition");
      expect(s.fakeCalls()).toEqual([]);
    }
  });

  test("detach disconnects a managed volume and is idempotent", async () => {
    const s = setup();
    await s.connector.attach(vol());
    await s.connector.detach(vol());
    await s.connector.detach(vol());
    expect(await findNamespaceByNqn(s.sysfs, PVC)).toBeNull();
    expect(s.fakeCalls().map((l) => l.split(" ")[0])).toEqual(["connect", "disconnect"]);
  });

  // The real-kernel side of these is test/vm/leftover.test.ts and outage.test.ts.
  test("a leftover connection whose controllers are not live is UNAVAILABLE at attach and nothing runs", async () => {
    const s = setup();
    makeFakeSysfs(s.sysfs, [{ nqn: PVC, controllers: [{ state: "connecting" }], namespaces: [{ dev: "259:3" }] }]);
    const err = await s.connector.attach(vol()).catch((e) => e);
    expect(err.kind).toBe("unavailable");
    expect(err.message).toContain("nvme0 is connecting");
    expect(s.fakeCalls()).toEqual([]);
    expect(await s.connector.transportProblem!(vol())).toContain("has no live NVMe controller (nvme0 is connecting)");
  });

  test("transport problem: none while a controller is live; named when none is left or nothing is connected", async () => {
    const s = setup();
    expect(await s.connector.transportProblem!(vol())).toBe(`${PVC} is not connected`);
    makeFakeSysfs(s.sysfs, [
      {
        nqn: PVC,
        controllers: [{ state: "live" }, { state: "connecting" }],
        namespaces: [{ dev: "259:4" }],
        multipathStyle: true,
      },
    ]);
    expect(await s.connector.transportProblem!(vol())).toBeNull();
  });
});

describe("property: no disconnect outside the gate", () => {
  // A small deterministic PRNG so a failure can be replayed.
  let seed = 20261121;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const word = () =>
    Array.from({ length: 1 + Math.floor(rnd() * 8) }, () => pick("abcdefxyz0123-.".split(""))).join("");
  const prefixes = [
    "nqn.2000-02.com.mikrotik:pvc-",
    "nqn.2000-02.com.mikrotik:k8s-",
    "nqn.2014-08.org.example:vol",
    "nqn.2000-02.com.mikrotik:pvc-a",
  ];

  test("random NQNs, prefixes, protected patterns and system mounts", async () => {
    let disconnectsAllowed = 0;
    for (let i = 0; i < 30; i++) {
      const prefix = pick(prefixes);
      const nqn = rnd() < 0.6 ? prefix + word() : pick(prefixes) + word();
      const protectedPatterns =
        rnd() < 0.3 ? [nqn.slice(0, Math.max(5, Math.floor(rnd() * nqn.length))) + "*"] : rnd() < 0.2 ? [nqn] : [];
      const systemNqns = rnd() < 0.3 ? [nqn] : [];
      const s = setup({ protectedPatterns, systemNqns, settleMs: 100 });
      s.policy.prefix = prefix;
      makeFakeSysfs(s.sysfs, [{ nqn }]);
      orphan(s.sysfs, nqn);
      await s.connector.attach(vol(nqn)).catch(() => {});
      await s.connector.detach(vol(nqn)).catch(() => {});
      const managed = classifyNqn(nqn, { prefix, protectedPatterns }, new Set(systemNqns)).managed;
      const disconnects = s.calls.filter((c) => c[1] === "disconnect");
      if (!managed)
        expect({ nqn, prefix, protectedPatterns, systemNqns, disconnects }).toEqual({
          nqn,
          prefix,
          protectedPatterns,
          systemNqns,
          disconnects: [],
        });
      else {
        expect(disconnects.length).toBeGreaterThan(0);
        disconnectsAllowed++;
      }
      dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
      dirs = [];
    }
    // The run must exercise both sides of the gate.
    expect(disconnectsAllowed).toBeGreaterThan(3);
    expect(disconnectsAllowed).toBeLessThan(30);
  }, 60_000);
});
