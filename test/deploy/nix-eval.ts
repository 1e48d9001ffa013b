import { existsSync, mkdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { createRunner, describeFailure, type ExecResult } from "../../src/runtime/exec.ts";

export const ROOT = resolve(import.meta.dir, "../..");
export const NIX_DIR = join(ROOT, "nix");
export const BINARY = join(ROOT, "dist", "rds-csi");
/** nixpkgs' lib (MIT), shared beside the checkout; see its README. Overridable for other layouts. */
export const NIXPKGS_LIB = process.env.RDS_CSI_NIXPKGS_LIB ?? resolve(ROOT, "../shared/vendor/nixpkgs-lib/lib");

const runner = createRunner();

/** Fails (never skips) with the fix when nixpkgs' lib is not where the tests look for it. */
function requireNixpkgsLib(): void {
  if (!existsSync(join(NIXPKGS_LIB, "default.nix"))) {
    throw new Error(
      `nixpkgs' lib not found at ${NIXPKGS_LIB}: put the nixpkgs lib/ tree there or set RDS_CSI_NIXPKGS_LIB`,
    );
  }
}

/**
 * nix-instantiate without a daemon or a store: nothing here builds, so the dummy store is enough,
 * and a private state dir and HOME keep it off the machine's /nix and ~/.cache (works as root
 * or not, on a fresh host where nix-bin never initialised /nix).
 */
export function nix(args: string[], scratch: string): Promise<ExecResult> {
  return runner("nix-instantiate", ["--store", "dummy://", ...args], {
    timeoutMs: 60_000,
    maxOutputBytes: 16 * 1024 * 1024,
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: scratch, NIX_STATE_DIR: join(scratch, "nix-state") },
  });
}

export async function nixJson(args: string[], scratch: string): Promise<unknown> {
  const r = await nix(["--eval", "--strict", "--json", ...args], scratch);
  if (r.exitCode !== 0 || r.truncated) throw new Error(describeFailure(r));
  return JSON.parse(r.stdout);
}

/** Nix string literal of any JS string (JSON escapes are valid Nix escapes, `$` needs its own). */
export const nixString = (s: string) => JSON.stringify(s).replace(/\$\{/g, "\\${");

/**
 * Which Debian packages hold the programs of each nixpkgs package the module puts on a PATH.
 * Debian splits util-linux (mount, umount, losetup are in `mount`); nixpkgs does not.
 */
const DEBIAN_PACKAGES: Record<string, string[]> = {
  bash: ["bash"],
  coreutils: ["coreutils"],
  diffutils: ["diffutils"],
  findutils: ["findutils"],
  gnugrep: ["grep"],
  gnused: ["sed"],
  systemd: [],
  "nvme-cli": ["nvme-cli"],
  e2fsprogs: ["e2fsprogs"],
  xfsprogs: ["xfsprogs"],
  "util-linux": ["util-linux", "mount"],
  kmod: ["kmod"],
};

/**
 * Stand-ins for nixpkgs packages made of this host's programs: `<dir>/<name>/bin/<program>`
 * links to the binaries `dpkg -L` lists for the matching Debian packages, so a unit's PATH built
 * from them holds exactly what the nixpkgs packages would provide. nixpkgs' bash also has bin/sh.
 * `rds-csi` is the real dist/rds-csi.
 */
export async function hostPackages(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, debs] of Object.entries(DEBIAN_PACKAGES)) {
    const bin = join(dir, name, "bin");
    mkdirSync(bin, { recursive: true });
    for (const deb of debs) {
      const r = await runner("dpkg", ["-L", deb], { timeoutMs: 10_000 });
      if (r.exitCode !== 0) throw new Error(`dpkg -L ${deb}: ${describeFailure(r)} (scripts/setup installs it)`);
      for (const file of r.stdout.split("\n")) {
        if (!/^(\/usr)?\/s?bin\/[^/]+$/.test(file)) continue;
        const target = join(bin, basename(file));
        if (existsSync(target) || !isExecutable(file)) continue;
        symlinkSync(file, target);
      }
    }
    if (name === "bash") symlinkSync("bash", join(bin, "sh"));
    out[name] = join(dir, name);
  }
  mkdirSync(join(dir, "rds-csi", "bin"), { recursive: true });
  symlinkSync(BINARY, join(dir, "rds-csi", "bin", "rds-csi"));
  out["rds-csi"] = join(dir, "rds-csi");
  return out;
}

function isExecutable(file: string): boolean {
  try {
    const st = statSync(file);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

export interface Unit {
  text: string;
  environment: Record<string, string | null>;
  serviceConfig: Record<string, unknown>;
  before: string[];
  path: string[];
}
export interface Evaluation {
  failedAssertions: string[];
  warnings: string[];
  services: Record<string, Unit>;
  timers: Record<string, { timerConfig: Record<string, unknown>; wantedBy: string[] }>;
  etc: Record<string, string | null>;
  tmpfiles: string[];
  kernelModules: string[];
}

/**
 * Evaluates nix/module.nix (through nix/tests/eval-module.nix) for `settings` under
 * services.rds-csi plus optional raw Nix attributes merged into the configuration.
 */
export async function evalModule(
  scratch: string,
  settings: Record<string, unknown>,
  opts: { packages?: Record<string, string>; extraNix?: string; hostName?: string } = {},
): Promise<Evaluation> {
  const r = await evalModuleRaw(scratch, settings, opts);
  if (r.exitCode !== 0 || r.truncated) throw new Error(describeFailure(r));
  return JSON.parse(r.stdout) as Evaluation;
}

let configCount = 0;
export async function evalModuleRaw(
  scratch: string,
  settings: Record<string, unknown>,
  opts: { packages?: Record<string, string>; extraNix?: string; hostName?: string; attr?: "result" | "toplevel" } = {},
): Promise<ExecResult> {
  requireNixpkgsLib();
  const n = ++configCount;
  const settingsFile = join(scratch, `settings-${n}.json`);
  writeFileSync(settingsFile, JSON.stringify(settings));
  const configFile = join(scratch, `configuration-${n}.nix`);
  writeFileSync(
    configFile,
    `{ lib, ... }: {
  networking.hostName = ${nixString(opts.hostName ?? "node-a")};
  system.stateVersion = "24.11";
  services.rds-csi = builtins.fromJSON (builtins.readFile ${settingsFile});
  ${opts.extraNix ?? ""}
}
`,
  );
  const packagesFile = join(scratch, `packages-${n}.json`);
  writeFileSync(packagesFile, JSON.stringify(opts.packages ?? {}));
  return nix(
    [
      "--eval",
      "--strict",
      "--json",
      join(NIX_DIR, "tests/eval-module.nix"),
      "--arg",
      "configuration",
      configFile,
      "--arg",
      "packages",
      `builtins.fromJSON (builtins.readFile ${packagesFile})`,
      "--arg",
      "nixpkgsLib",
      NIXPKGS_LIB,
      "-A",
      opts.attr ?? "result",
    ],
    scratch,
  );
}

/** `Environment="NAME=value"` lines of a rendered unit, decoded. */
export function unitEnvironment(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (!line.startsWith("Environment=")) continue;
    const assignment = JSON.parse(line.slice("Environment=".length)) as string;
    const eq = assignment.indexOf("=");
    env[assignment.slice(0, eq)] = assignment.slice(eq + 1);
  }
  return env;
}

/** The single value of `key=` in a rendered unit. */
export function unitValue(text: string, key: string): string | undefined {
  const lines = text.split("\n").filter((l) => l.startsWith(`${key}=`));
  if (lines.length > 1) throw new Error(`${key} appears ${lines.length} times`);
  return lines[0]?.slice(key.length + 1);
}

/**
 * An ExecStart= value split into argv the way systemd.service(5) "Command lines" describes:
 * words separated by whitespace, double- or single-quoted words with C-style escapes, `%%` is a
 * literal `%` (any other `%x` is a specifier systemd would expand) and `$$` a literal `$` (a lone
 * `$NAME` or `${NAME}` would be replaced by the environment). Refuses what systemd would expand,
 * so an argument that is not passed through literally fails the test instead of being guessed.
 */
export function systemdExecArgv(line: string): string[] {
  const argv: string[] = [];
  let i = 0;
  const escapes: Record<string, string> = { n: "\n", t: "\t", r: "\r", "\\": "\\", '"': '"', "'": "'", " ": " " };
  while (i < line.length) {
    while (line[i] === " " || line[i] === "\t") i++;
    if (i >= line.length) break;
    let word = "";
    const quote = line[i] === '"' || line[i] === "'" ? line[i++] : undefined;
    while (i < line.length) {
      const c = line[i]!;
      if (quote ? c === quote : c === " " || c === "\t") {
        if (quote) i++;
        break;
      }
      if (c === "\\") {
        const e = line[i + 1]!;
        if (e === "u") {
          word += String.fromCharCode(parseInt(line.slice(i + 2, i + 6), 16));
          i += 6;
          continue;
        }
        if (!(e in escapes)) throw new Error(`unsupported escape \\${e} in ${line}`);
        word += escapes[e];
        i += 2;
        continue;
      }
      if (c === "%") {
        if (line[i + 1] !== "%") throw new Error(`systemd would expand the specifier %${line[i + 1]} in ${line}`);
        word += "%";
        i += 2;
        continue;
      }
      if (c === "$") {
        if (line[i + 1] !== "$")
          throw new Error(`systemd would substitute $${line[i + 1]}… from the environment in ${line}`);
        word += "$";
        i += 2;
        continue;
      }
      word += c;
      i++;
    }
    argv.push(word);
  }
  return argv;
}
