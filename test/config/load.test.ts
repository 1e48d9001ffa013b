import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { COMMON_OPTIONS, HOST_NQN_FILE_OPTION, NVME_COMMAND_OPTION } from "../../src/config/options.ts";
import { ConfigError, loadConfig } from "../../src/config/load.ts";

const tmp = mkdtempSync("/tmp/rds-csi-config-");
const load = (flags: Record<string, unknown> = {}, env: Record<string, string> = {}, required?: string[]) =>
  loadConfig({ specs: COMMON_OPTIONS, flags, env, required });

describe("config loading", () => {
  test("defaults apply and are validated/transformed", () => {
    const { config } = load();
    expect(config.endpoint).toBe("unix:///var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock");
    expect(config.shutdownGrace).toBe(30_000);
    expect(config.socketMode).toBe(0o600);
    expect(config.protectedNqn).toEqual([]);
  });

  test("precedence is flag > env > file > default", () => {
    const file = `${tmp}/c.yaml`;
    writeFileSync(file, "log-level: warn\nstate-dir: /from/file\nshutdownGrace: 7s\nnode-id: filenode\n");
    const { config, sources } = load(
      { config: file, "log-level": "debug" },
      { RDS_CSI_LOG_LEVEL: "error", RDS_CSI_STATE_DIR: "/from/env" },
    );
    expect(config.logLevel).toBe("debug");
    expect(config.stateDir).toBe("/from/env");
    expect(config.shutdownGrace).toBe(7_000);
    expect(config.nodeId).toBe("filenode");
    expect(sources).toMatchObject({
      "log-level": "flag",
      "state-dir": "env",
      "shutdown-grace": "file",
      "node-id": "file",
    });
  });

  test("JSON config files work and unknown keys are refused by name", () => {
    const good = `${tmp}/c.json`;
    writeFileSync(good, JSON.stringify({ "nqn-prefix": "nqn.2000-02.com.mikrotik:pvc-" }));
    expect(load({ config: good }).config.nqnPrefix).toBe("nqn.2000-02.com.mikrotik:pvc-");
    const bad = `${tmp}/bad.json`;
    writeFileSync(bad, JSON.stringify({ "nqn-prefx": "x" }));
    expect(() => load({ config: bad })).toThrow(/unknown option "nqn-prefx"/);
  });

  test("CSI_MANAGED_NQN_PREFIX is honoured for compatibility, below RDS_CSI_NQN_PREFIX", () => {
    expect(load({}, { CSI_MANAGED_NQN_PREFIX: "nqn.2000-02.com.mikrotik:pvc-" }).config.nqnPrefix).toBe(
      "nqn.2000-02.com.mikrotik:pvc-",
    );
    expect(
      load(
        {},
        {
          CSI_MANAGED_NQN_PREFIX: "nqn.2000-02.com.mikrotik:pvc-",
          RDS_CSI_NQN_PREFIX: "nqn.2000-02.com.mikrotik:k8s-",
        },
      ).config.nqnPrefix,
    ).toBe("nqn.2000-02.com.mikrotik:k8s-");
  });

  test("a bad value gives one message naming the option, its source and the value", () => {
    expect(() => load({ "nqn-prefix": "nqn.2000-02.com.mikrotik:" })).toThrow(
      /option --nqn-prefix \(--nqn-prefix\): value "nqn.2000-02.com.mikrotik:" is only a domain/,
    );
    expect(() => load({}, { RDS_CSI_SHUTDOWN_GRACE: "soon" })).toThrow(
      /--shutdown-grace \(environment RDS_CSI_SHUTDOWN_GRACE\): value "soon"/,
    );
    expect(() => load({ "log-format": "xml" })).toThrow(/--log-format.*must be one of json, pretty/);
    expect(() => load({ "protected-nqn": ["nqn.ok:*", "bad pattern"] })).toThrow(/--protected-nqn.*item 1/);
    expect(() => load({ endpoint: "/relative.sock" })).toThrow(/--endpoint/);
    expect(() => load({ "breaker-threshold": 0 })).toThrow(/--breaker-threshold.*at least 1/);
  });

  test("required options are enforced with the ways to set them", () => {
    expect(() => load({}, {}, ["nqn-prefix"])).toThrow(ConfigError);
    expect(() => load({}, {}, ["nqn-prefix"])).toThrow(/--nqn-prefix is required.*RDS_CSI_NQN_PREFIX/);
  });

  test("arrays come from repeated flags or comma-separated env", () => {
    expect(load({}, { RDS_CSI_PROTECTED_NQN: "nqn.a:x-*, nqn.b:y" }).config.protectedNqn).toEqual([
      "nqn.a:x-*",
      "nqn.b:y",
    ]);
  });
});

describe("one name per concept, earlier names still accepted with a warning", () => {
  const specs = [NVME_COMMAND_OPTION, HOST_NQN_FILE_OPTION];
  test("--nvme-bin (gc's old flag) sets nvme-command and warns", () => {
    const r = loadConfig({ specs, flags: { "nvme-bin": "/opt/nvme" }, env: {} });
    expect(r.config.nvmeCommand).toBe("/opt/nvme");
    expect(r.warnings).toEqual(["option --nvme-bin is deprecated: use --nvme-command"]);
  });
  test("the new flag wins over the old one", () => {
    const r = loadConfig({ specs, flags: { "nvme-bin": "/old", "nvme-command": "/new" }, env: {} });
    expect(r.config.nvmeCommand).toBe("/new");
  });
  test("RDS_CSI_HOSTNQN_FILE (doctor's old name) and a config-file key hostnqn-file still work", () => {
    const env = loadConfig({ specs, flags: {}, env: { RDS_CSI_HOSTNQN_FILE: "/etc/other" } });
    expect(env.config.hostNqnFile).toBe("/etc/other");
    expect(env.warnings[0]).toContain("RDS_CSI_HOST_NQN_FILE");
    const dir = mkdtempSync(join(tmpdir(), "rds-cfg-"));
    writeFileSync(join(dir, "c.yaml"), "hostnqn-file: /etc/from-file\n");
    const file = loadConfig({
      specs: [...specs, { name: "config", type: "string", describe: "" }],
      flags: { config: join(dir, "c.yaml") },
      env: {},
    });
    expect(file.config.hostNqnFile).toBe("/etc/from-file");
    expect(file.warnings[0]).toContain("host-nqn-file");
  });
  test("no warning when only the current names are used", () => {
    expect(loadConfig({ specs, flags: { "nvme-command": "nvme" }, env: {} }).warnings).toEqual([]);
  });
});

describe("empty values", () => {
  test("a single value given empty is refused naming the option; a list given empty is an empty list", () => {
    expect(() => load({ "shutdown-grace": "" })).toThrow(
      /option --shutdown-grace \(--shutdown-grace\): an empty value is not allowed/,
    );
    expect(() => load({}, { RDS_CSI_NODE_ID: "" })).not.toThrow();
    expect(load({ "protected-nqn": [""] }).config.protectedNqn).toEqual([]);
  });
});
