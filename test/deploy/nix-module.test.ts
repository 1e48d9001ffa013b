/**
 * nix/module.nix evaluated for real (nixpkgs' lib.evalModules with stub NixOS options, see
 * nix/tests/eval-module.nix), its units rendered as NixOS renders them, and every generated
 * ExecStart run with the real dist/rds-csi under that unit's own environment and PATH, the PATH
 * made of this host's programs standing in for the nixpkgs packages (test/deploy/nix-eval.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { csiClient } from "../../src/csi/client.ts";
import { findOnPath } from "../../src/runtime/tools-on-path.ts";
import {
  BINARY,
  NIX_DIR,
  NIXPKGS_LIB,
  evalModule,
  nix,
  evalModuleRaw,
  hostPackages,
  nixJson,
  systemdExecArgv,
  unitEnvironment,
  unitValue,
  type Evaluation,
  type Unit,
} from "./nix-eval.ts";

const PREFIX = "nqn.2000-02.com.mikrotik:pvc-";
const SYSTEM = "nqn.2000-02.com.mikrotik:nixos-node-a-root";
const PROTECTED = "nqn.2000-02.com.mikrotik:nixos-*";
const HOST_NQN = "nqn.2014-08.org.nvmexpress:uuid:0b2d7c4e-3f1a-4a55-9d3e-2f6c1b8a7e90";

let scratch = "";
let packages: Record<string, string> = {};
beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "rds-csi-nixmod-"));
  packages = await hostPackages(join(scratch, "pkgs"));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

const base = (extra: Record<string, unknown> = {}) => ({
  enable: true,
  nqnPrefix: PREFIX,
  systemNqns: [SYSTEM],
  protectedNqns: [PROTECTED],
  hostNqn: HOST_NQN,
  node: { enable: true },
  doctor: { enable: true },
  gc: { enable: true },
  ...extra,
});

/** Runs one argv with exactly `env` (what systemd gives the unit), collecting output. */
function spawnUnit(argv: string[], env: Record<string, string>) {
  const child = Bun.spawn(argv, { env, stdout: "pipe", stderr: "pipe" });
  const out = { stdout: "", stderr: "" };
  const pump = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) out[key] += decoder.decode(chunk, { stream: true });
  };
  const done = Promise.all([pump(child.stdout, "stdout"), pump(child.stderr, "stderr")]).then(() => child.exited);
  return { child, out, done };
}

async function runToExit(argv: string[], env: Record<string, string>, timeoutMs = 60_000) {
  const run = spawnUnit(argv, env);
  const timer = setTimeout(() => run.child.kill("SIGKILL"), timeoutMs);
  const code = await run.done;
  clearTimeout(timer);
  return { code, ...run.out };
}

/** Exit statuses systemd counts as success for this unit: 0 plus SuccessExitStatus=. */
function acceptedStatuses(unit: Unit): number[] {
  const extra = unitValue(unit.text, "SuccessExitStatus");
  return [0, ...(extra ? extra.split(/\s+/).map(Number) : [])];
}

function execOf(unit: Unit) {
  const line = unitValue(unit.text, "ExecStart");
  if (!line) throw new Error("no ExecStart");
  return { argv: systemdExecArgv(line), env: unitEnvironment(unit.text) };
}

/** The tools the binary itself reports missing when its PATH holds nothing at all. */
async function binaryToolList(): Promise<string[]> {
  const dir = join(scratch, "bare");
  mkdirSync(join(dir, "empty-path"), { recursive: true });
  const run = spawnUnit(
    [
      BINARY,
      "csi-node",
      "--nqn-prefix",
      PREFIX,
      "--state-dir",
      join(dir, "state"),
      "--endpoint",
      `unix://${join(dir, "csi.sock")}`,
      "--host-nqn-file",
      join(dir, "hostnqn"),
    ],
    { PATH: join(dir, "empty-path") },
  );
  try {
    for (let i = 0; i < 200 && !run.out.stdout.includes('"csi-node ready"'); i++) await Bun.sleep(50);
    const line = run.out.stdout.split("\n").find((l) => l.includes("required tools are missing"));
    if (!line)
      throw new Error(`the binary reported no missing tools with an empty PATH:\n${run.out.stdout}\n${run.out.stderr}`);
    return (JSON.parse(line) as { missing: string[] }).missing;
  } finally {
    run.child.kill("SIGTERM");
    await run.done;
  }
}

describe("every tool the binary calls is on the units' PATH and in the image", () => {
  let tools: string[] = [];
  let runtimeTools: Record<string, string> = {};
  beforeAll(async () => {
    tools = await binaryToolList();
    runtimeTools = (await nixJson([join(NIX_DIR, "runtime-tools.nix")], scratch)) as Record<string, string>;
  });

  test("the binary's own check names its tools (sh and cmp among them), and nix/runtime-tools.nix maps each to a package", () => {
    expect(tools).toContain("sh");
    expect(tools).toContain("cmp");
    expect(tools).toContain("nvme");
    expect(tools.filter((t) => !(t in runtimeTools))).toEqual([]);
  });

  test("each unit's PATH resolves every one of them", async () => {
    const ev = await evalModule(scratch, base(), { packages });
    expect(Object.keys(ev.services).sort()).toEqual(["rds-csi-doctor", "rds-csi-gc", "rds-csi-node"]);
    for (const [name, unit] of Object.entries(ev.services)) {
      const path = unitEnvironment(unit.text).PATH;
      expect({ name, missing: tools.filter((t) => !findOnPath(t, path)) }).toEqual({ name, missing: [] });
    }
  });

  test("the container image (nix/image.nix) holds every one of them in /bin or /sbin", async () => {
    const expr = `let
      lib = import ${JSON.stringify(NIXPKGS_LIB)};
      stub = name: { type = "derivation"; inherit name; outPath = (builtins.fromJSON ${JSON.stringify(JSON.stringify(packages))}).\${name} or "/nonexistent/\${name}"; version = "0"; meta.mainProgram = name; };
      pkgs = lib.genAttrs [ "bash" "coreutils" "diffutils" "nvme-cli" "e2fsprogs" "xfsprogs" "util-linux" "kmod" "cacert" ] stub;
      image = import ${JSON.stringify(join(NIX_DIR, "image.nix"))} {
        inherit lib pkgs; inherit (pkgs) cacert;
        callPackage = _: _: stub "rds-csi";
        dockerTools = { buildLayeredImage = args: args; binSh = stub "bin-sh"; };
      };
    in { contents = map (p: p.outPath) image.contents; env = image.config.Env; }`;
    const image = (await nixJson(["-E", expr], scratch)) as { contents: string[]; env: string[] };
    expect(image.env).toContain("PATH=/bin:/sbin");
    const path = image.contents.flatMap((p) => [join(p, "bin"), join(p, "sbin")]).join(":");
    expect(tools.filter((t) => !findOnPath(t, path))).toEqual([]);
  });
});

describe("the rendered units, run with the real binary", () => {
  let ev: Evaluation;
  const textDir = () => join(scratch, "text%h$HOME");
  beforeAll(async () => {
    ev = await evalModule(
      scratch,
      base({
        stateDir: join(scratch, "state"),
        kubeletDir: join(scratch, "kubelet"),
        node: { enable: true, extraArgs: ["--max-volumes", "7"] },
        doctor: { enable: true, textfileDir: textDir() },
      }),
      { packages },
    );
    mkdirSync(join(scratch, "state"), { recursive: true, mode: 0o700 });
    mkdirSync(textDir(), { recursive: true });
  });

  test("node reaches ready with the module's prefix and protection; gc and doctor beside it exit with statuses their units accept", async () => {
    const node = execOf(ev.services["rds-csi-node"]!);
    expect(node.argv.slice(1)).toEqual(["csi-node", "--max-volumes", "7"]);
    const run = spawnUnit(node.argv, node.env);
    try {
      for (let i = 0; i < 300 && !run.out.stdout.includes('"csi-node ready"'); i++) await Bun.sleep(50);
      const lines = run.out.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const ready = lines.find((l) => l.msg === "csi-node ready");
      expect(ready).toBeDefined();
      expect(lines.filter((l) => l.msg === "required tools are missing; Probe reports not ready")).toEqual([]);
      expect(ready).toMatchObject({ nqn_prefix: PREFIX, protected: [SYSTEM, PROTECTED], node_id: "node-a" });

      const client = csiClient(node.env.RDS_CSI_ENDPOINT!);
      try {
        expect(await client.identity.Probe({})).toEqual({ ready: { value: true } });
        const info = await client.node.NodeGetInfo({});
        expect(String(info.max_volumes_per_node)).toBe("7");
        expect(info.node_id).toContain("node-a");
      } finally {
        client.close();
      }

      // The hourly gc plan while the node plugin holds its lock.
      const gcUnit = ev.services["rds-csi-gc"]!;
      const gc = execOf(gcUnit);
      expect(gc.argv.slice(1)).toEqual(["gc"]);
      const gcRun = await runToExit(gc.argv, gc.env);
      expect({
        accepted: acceptedStatuses(gcUnit).includes(gcRun.code),
        code: gcRun.code,
        stderr: gcRun.stderr,
      }).toMatchObject({ accepted: true });
      expect(gcRun.stdout).toContain("csi-node (pid");

      const doctorUnit = ev.services["rds-csi-doctor"]!;
      const doctor = execOf(doctorUnit);
      const textfile = join(textDir(), "rds_csi.prom");
      expect(doctor.argv.slice(1)).toEqual(["doctor", "--prometheus-textfile", textfile]);
      const doctorRun = await runToExit(doctor.argv, doctor.env);
      expect({
        accepted: acceptedStatuses(doctorUnit).includes(doctorRun.code),
        code: doctorRun.code,
        out: doctorRun.stdout,
      }).toMatchObject({ accepted: true });
      // Under the unit's PATH every mount is probed (no "could not be checked").
      expect(doctorRun.stdout).not.toContain("could not be checked");
      expect(doctorRun.stdout).toContain("every mount answered its probe");
      expect(readFileSync(textfile, "utf8")).toContain("rds_csi_doctor_status ");

      // A textfile that cannot be written is a failure the unit sees, not a warning it accepts.
      renameSync(textDir(), `${textDir()}-gone`);
      const failed = await runToExit(doctor.argv, doctor.env);
      renameSync(`${textDir()}-gone`, textDir());
      expect(failed.code).toBe(3);
      expect(acceptedStatuses(doctorUnit)).not.toContain(failed.code);
    } finally {
      run.child.kill("SIGTERM");
    }
    const started = performance.now();
    expect(await run.done).toBe(0);
    const stopSec = Number(unitValue(ev.services["rds-csi-node"]!.text, "TimeoutStopSec"));
    expect(performance.now() - started).toBeLessThan(stopSec * 1000);
  }, 120_000);

  test("gc with force is refused beside the node plugin; plan-only gc accepts 1 (candidates), acting gc does not", async () => {
    expect(acceptedStatuses(ev.services["rds-csi-gc"]!)).toEqual([0, 1]);
    const both = await evalModule(scratch, base({ gc: { enable: true, force: true } }), { packages });
    expect(both.failedAssertions.join("\n")).toContain(
      "services.rds-csi.gc.force cannot be used with services.rds-csi.node.enable",
    );
    const alone = await evalModule(scratch, base({ node: { enable: false }, gc: { enable: true, force: true } }), {
      packages,
    });
    expect(alone.failedAssertions).toEqual([]);
    expect(execOf(alone.services["rds-csi-gc"]!).argv.slice(1)).toEqual(["gc", "--force"]);
    expect(acceptedStatuses(alone.services["rds-csi-gc"]!)).toEqual([0]);
  }, 60_000);

  test("stop margin, unit ordering, host NQN and timers", () => {
    const node = ev.services["rds-csi-node"]!;
    // The drain may take the whole grace; then each of the node's five closers (lock, probes, CSI
    // server, admin socket, metrics) gets up to 5 s (src/runtime/shutdown.ts).
    expect(Number(unitValue(node.text, "TimeoutStopSec"))).toBeGreaterThanOrEqual(30 + 5 * 5);
    expect(unitValue(node.text, "KillMode")).toBe("mixed");
    expect(node.before).toEqual(["kubelet.service", "k3s.service"]);
    expect(ev.etc["nvme/hostnqn"]).toBe(`${HOST_NQN}\n`);
    expect(ev.warnings).toEqual([]);
    expect(ev.timers["rds-csi-gc"]!.timerConfig.OnUnitActiveSec).toBe("1h");
    expect(ev.kernelModules).toEqual(["nvme-tcp"]);
  });
});

describe("what the module refuses", () => {
  const failures = async (settings: Record<string, unknown>, extraNix?: string) =>
    (await evalModule(scratch, settings, { packages, ...(extraNix ? { extraNix } : {}) })).failedAssertions.join("\n");

  test.each([
    [
      "environment.RDS_CSI_NQN_PREFIX",
      { environment: { RDS_CSI_NQN_PREFIX: "nqn.2000-02.com.mikrotik:" } },
      "services.rds-csi.environment sets RDS_CSI_NQN_PREFIX",
    ],
    [
      'environment.RDS_CSI_PROTECTED_NQN = ""',
      { environment: { RDS_CSI_PROTECTED_NQN: "" } },
      "services.rds-csi.environment sets RDS_CSI_PROTECTED_NQN",
    ],
    [
      "environment.CSI_MANAGED_NQN_PREFIX",
      { environment: { CSI_MANAGED_NQN_PREFIX: "nqn.2000-02.com.mikrotik:" } },
      "sets CSI_MANAGED_NQN_PREFIX",
    ],
    ["environment.RDS_CSI_CONFIG", { environment: { RDS_CSI_CONFIG: "/etc/rds-csi.yaml" } }, "sets RDS_CSI_CONFIG"],
    [
      "environment.RDS_CSI_STATE_DIR",
      { environment: { RDS_CSI_STATE_DIR: "state" } },
      "it has its own services.rds-csi option",
    ],
    [
      "node.extraArgs --nqn-prefix",
      { node: { enable: true, extraArgs: ["--nqn-prefix", "nqn.2000-02.com.mikrotik:"] } },
      'services.rds-csi.node.extraArgs contains "--nqn-prefix"',
    ],
    [
      "gc.extraArgs --nqnPrefix=",
      { gc: { enable: true, extraArgs: ["--nqnPrefix=nqn.2000-02.com.mikrotik:"] } },
      "services.rds-csi.nqnPrefix instead",
    ],
    [
      "doctor.extraArgs --protected-nqn=",
      { doctor: { enable: true, extraArgs: ["--protected-nqn="] } },
      "services.rds-csi.protectedNqns or systemNqns instead",
    ],
    [
      "node.extraArgs --config",
      { node: { enable: true, extraArgs: ["--config", "/etc/x.yaml"] } },
      'contains "--config"',
    ],
    ["gc.extraArgs --force", { gc: { enable: true, extraArgs: ["--force"] } }, "services.rds-csi.gc.force instead"],
    ["gc.extraArgs --ignore-lock", { gc: { enable: true, extraArgs: ["--ignore-lock"] } }, 'contains "--ignore-lock"'],
  ])(
    "%s",
    async (_name, settings, message) => {
      expect(await failures(base(settings))).toContain(message);
    },
    60_000,
  );

  test.each([
    [
      "a mkForce on the unit's environment",
      'systemd.services.rds-csi-node.environment.RDS_CSI_NQN_PREFIX = lib.mkForce "nqn.2000-02.com.mikrotik:";',
      'systemd.services.rds-csi-node.environment.RDS_CSI_NQN_PREFIX is "nqn.2000-02.com.mikrotik:"',
    ],
    [
      "an EnvironmentFile",
      'systemd.services.rds-csi-gc.serviceConfig.EnvironmentFile = "/etc/rds-csi.env";',
      "systemd.services.rds-csi-gc.serviceConfig.EnvironmentFile is set",
    ],
    [
      "systemd.globalEnvironment",
      'systemd.globalEnvironment.RDS_CSI_PROTECTED_NQN = "";',
      "systemd.globalEnvironment sets RDS_CSI_PROTECTED_NQN",
    ],
    [
      "a replaced ExecStart",
      'systemd.services.rds-csi-node.serviceConfig.ExecStart = lib.mkForce "/bin/rds-csi csi-node --nqn-prefix nqn.2000-02.com.mikrotik:";',
      "ExecStart was changed outside services.rds-csi",
    ],
  ])(
    "the rendered unit is read back: %s",
    async (_name, extraNix, message) => {
      expect(await failures(base(), extraNix)).toContain(message);
    },
    60_000,
  );

  test("no protection at all is a warning; a prefix that covers `nixos-` volumes, or a system NQN inside the prefix, is an error", async () => {
    const bare = await evalModule(scratch, base({ systemNqns: [], protectedNqns: [] }), { packages });
    expect(bare.failedAssertions).toEqual([]);
    expect(bare.warnings.join("\n")).toContain("neither systemNqns nor protectedNqns is set");
    expect(
      await failures(base({ nqnPrefix: "nqn.2000-02.com.mikrotik:n", systemNqns: [], protectedNqns: [] })),
    ).toContain('services.rds-csi.nqnPrefix "nqn.2000-02.com.mikrotik:n" covers "nqn.2000-02.com.mikrotik:nixos-*"');
    expect(await failures(base({ systemNqns: [`${PREFIX}system`] }))).toContain(
      `services.rds-csi.systemNqns entry "${PREFIX}system" overlaps`,
    );
    const noHostNqn = await evalModule(scratch, base({ hostNqn: null }), { packages });
    expect(noHostNqn.warnings.join("\n")).toContain("services.rds-csi.hostNqn is unset");
  }, 60_000);

  test("a comma inside a protected pattern is refused (the list reaches the binary comma-separated)", async () => {
    expect(
      await failures(base({ protectedNqns: ["nqn.2000-02.com.mikrotik:nixos-a,nqn.2000-02.com.mikrotik:nixos-b"] })),
    ).toContain("must not contain ','");
    expect(await failures(base({ systemNqns: ["nqn.2000-02.com.mikrotik:a,b"] }))).toContain(
      "services.rds-csi.systemNqns entry",
    );
  }, 60_000);

  // Each value is refused by the module's option type and, given directly, by the binary.
  test.each([
    ["driverName", { driverName: "RDS_CSI" }, ["--driver-name", "RDS_CSI"]],
    [
      "doctor.textfileDir",
      { doctor: { enable: true, textfileDir: "metrics" } },
      ["--prometheus-textfile", "metrics/rds_csi.prom"],
    ],
    ["stateDir", { stateDir: "/var/lib/../rds-csi" }, ["--state-dir", "/var/lib/../rds-csi"]],
    ["kubeletDir", { kubeletDir: "var/lib/kubelet" }, ["--kubelet-dir", "var/lib/kubelet"]],
    ["nodeId", { nodeId: "node a" }, ["--node-id", "node a"]],
  ])(
    "%s: refused by the option type and by the binary",
    async (option, settings, flags) => {
      const r = await evalModuleRaw(scratch, base(settings), { packages });
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toContain(`services.rds-csi.${option}`);
      const mode = option.startsWith("doctor") ? "doctor" : "gc";
      const bin = await runToExit([BINARY, mode, "--nqn-prefix", PREFIX, ...flags], { PATH: process.env.PATH ?? "" });
      expect(bin.code).toBe(2);
    },
    60_000,
  );

  test("the shared extraArgs is gone: a mode's flag goes only to that mode", async () => {
    const r = await evalModuleRaw(scratch, { ...base(), extraArgs: ["--max-volumes", "3"] }, { packages });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("services.rds-csi.extraArgs");
    const ev = await evalModule(scratch, base({ node: { enable: true, extraArgs: ["--max-volumes", "3"] } }), {
      packages,
    });
    expect(execOf(ev.services["rds-csi-gc"]!).argv).not.toContain("--max-volumes");
    expect(execOf(ev.services["rds-csi-node"]!).argv).toContain("--max-volumes");
  }, 60_000);
});

describe("the binary enforces the policy at start", () => {
  test.each(["csi-node", "gc"])(
    "%s: a protected pattern inside the prefix exits 2 with one line",
    async (mode) => {
      const dir = join(scratch, `overlap-${mode}`);
      const r = await runToExit(
        [
          BINARY,
          mode,
          "--nqn-prefix",
          PREFIX,
          "--protected-nqn",
          `${PREFIX}system-*`,
          "--state-dir",
          dir,
          "--endpoint",
          `unix://${join(dir, "csi.sock")}`,
        ],
        { PATH: process.env.PATH ?? "" },
      );
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `rds-csi ${mode}: option --protected-nqn "${PREFIX}system-*" overlaps --nqn-prefix "${PREFIX}": some NQN would be both managed and protected; protected NQNs must lie outside the managed prefix\n`,
      );
      expect(existsSync(join(dir, "csi-node.lock"))).toBe(false);
    },
    30_000,
  );
});

describe("the examples", () => {
  test("good.nix evaluates; dangerous.nix fails like a NixOS build, with the documented messages", async () => {
    const evalExample = (name: string) =>
      nix(
        [
          "--eval",
          "--strict",
          "--json",
          join(NIX_DIR, "tests/eval-module.nix"),
          "--arg",
          "configuration",
          join(NIX_DIR, "tests/examples", name),
          "--arg",
          "nixpkgsLib",
          NIXPKGS_LIB,
          "-A",
          "toplevel",
        ],
        scratch,
      );
    const good = await evalExample("good.nix");
    expect({ code: good.exitCode, stderr: good.stderr }).toEqual({ code: 0, stderr: "" });
    const dangerous = await evalExample("dangerous.nix");
    expect(dangerous.exitCode).not.toBe(0);
    expect(dangerous.stderr).toContain("Failed assertions:");
    expect(dangerous.stderr).toContain('- services.rds-csi.nqnPrefix "nqn.2000-02.com.mikrotik:" is only a domain');
    expect(dangerous.stderr).toContain(
      '- services.rds-csi.protectedNqns entry "nqn.2000-02.com.mikrotik:nixos-*" overlaps',
    );
  }, 60_000);
});
