/**
 * nix/package.nix and nix/npm-deps.nix, evaluated with nixpkgs' lib (nothing is built here: no
 * nixpkgs, no network). What can be checked without building is: every npm dependency the build
 * installs is a fixed-output fetch whose URL and sha512 are the ones npm itself fetched and
 * verified (its cache index, filled by scripts/setup), no devDependency (the `bun` npm package
 * and its install script included) is installed, install scripts are off, Bun is nixpkgs' bun,
 * and stripping really breaks the binary (the reason for dontStrip).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRunner } from "../../src/runtime/exec.ts";
import { BINARY, NIXPKGS_LIB, NIX_DIR, ROOT, nixJson } from "./nix-eval.ts";

const runner = createRunner();
let scratch = "";
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "rds-csi-nixpkg-"));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dev?: boolean;
  devOptional?: boolean;
}
interface Deps {
  package: Record<string, unknown>;
  packageLock: { packages: Record<string, LockEntry> };
}

const depsExpr = `let lib = import ${JSON.stringify(NIXPKGS_LIB)}; in import ${JSON.stringify(join(NIX_DIR, "npm-deps.nix"))} {
  inherit lib;
  packageJson = lib.importJSON ${JSON.stringify(join(ROOT, "package.json"))};
  packageLock = lib.importJSON ${JSON.stringify(join(ROOT, "package-lock.json"))};
}`;

/** url → integrity of every tarball in npm's cache index (what npm downloaded and verified). */
async function npmCacheIndex(): Promise<Map<string, Set<string>>> {
  const r = await runner("npm", ["config", "get", "cache"], { timeoutMs: 30_000 });
  const dir = join(r.stdout.trim(), "_cacache", "index-v5");
  const index = new Map<string, Set<string>>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    for (const line of readFileSync(join(entry.parentPath, entry.name), "utf8").split("\n")) {
      const tab = line.indexOf("\t");
      if (tab < 0) continue;
      const record = JSON.parse(line.slice(tab + 1)) as { key: string; integrity?: string };
      const url = record.key.replace(/^make-fetch-happen:request-cache:/, "");
      if (!url.endsWith(".tgz") || !record.integrity) continue;
      index.set(url, (index.get(url) ?? new Set()).add(record.integrity));
    }
  }
  return index;
}

describe("nix/npm-deps.nix", () => {
  test("every runtime dependency has the URL and sha512 npm fetched; no devDependency is installed", async () => {
    const deps = (await nixJson(["-E", depsExpr], scratch)) as Deps;
    const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
      packages: Record<string, LockEntry>;
    };
    const runtime = Object.keys(lock.packages).filter(
      (k) => k && !lock.packages[k]!.dev && !lock.packages[k]!.devOptional,
    );
    const entries = Object.entries(deps.packageLock.packages).filter(([k]) => k !== "");
    expect(entries.map(([k]) => k).sort()).toEqual(runtime.sort());
    expect(entries.length).toBeGreaterThan(20);
    expect(entries.map(([k]) => k)).not.toContain("node_modules/bun");
    expect(deps.package.devDependencies).toBeUndefined();
    expect(deps.packageLock.packages[""]).not.toHaveProperty("devDependencies");

    const index = await npmCacheIndex();
    const unverified = entries
      .filter(([, e]) => !(e.integrity?.startsWith("sha512-") && e.resolved && index.get(e.resolved)?.has(e.integrity)))
      .map(([k, e]) => `${k}: ${e.resolved} ${e.integrity}`);
    expect(unverified).toEqual([]);
  });
});

describe("nix/package.nix", () => {
  test("importNpmLock gets the filtered lock, install scripts are off, Bun is nixpkgs' bun, strip and patchelf are off", async () => {
    const expr = `let
      lib = import ${JSON.stringify(NIXPKGS_LIB)};
      bun = { type = "derivation"; name = "bun"; outPath = "/nix/store/bun"; meta.mainProgram = "bun"; };
      importNpmLock = { __functor = _: args: { npmLockArgs = args; }; npmConfigHook = "npm-config-hook"; };
      stdenv.mkDerivation = f: let attrs = f attrs; in attrs;
      drv = import ${JSON.stringify(join(NIX_DIR, "package.nix"))} { inherit lib stdenv bun importNpmLock; nodejs = "nodejs"; };
    in {
      inherit (drv) pname version npmRebuildFlags dontStrip dontPatchELF doInstallCheck env;
      nativeBuildInputs = map toString drv.nativeBuildInputs;
      lockPackages = builtins.attrNames drv.npmDeps.npmLockArgs.packageLock.packages;
      devDependencies = drv.npmDeps.npmLockArgs.package.devDependencies or null;
    }`;
    const drv = (await nixJson(["-E", expr], scratch)) as Record<string, unknown>;
    expect(drv).toMatchObject({
      pname: "rds-csi",
      npmRebuildFlags: ["--ignore-scripts"],
      dontStrip: true,
      dontPatchELF: true,
      doInstallCheck: true,
      env: { BUN: "/nix/store/bun/bin/bun" },
      nativeBuildInputs: ["/nix/store/bun", "nodejs", "npm-config-hook"],
      devDependencies: null,
    });
    expect(drv.lockPackages as string[]).not.toContain("node_modules/bun");
    expect(drv.lockPackages as string[]).toContain("node_modules/@grpc/grpc-js");
  });

  test("why dontStrip: a stripped copy of the binary no longer runs rds-csi", async () => {
    const copy = join(scratch, "rds-csi-stripped");
    copyFileSync(BINARY, copy);
    const stripped = await runner("strip", [copy], { timeoutMs: 60_000 });
    expect(stripped.exitCode).toBe(0);
    const original = await runner(BINARY, ["version"], { timeoutMs: 30_000 });
    const after = await runner(copy, ["version"], { timeoutMs: 30_000 });
    expect(original.stdout).toStartWith("rds-csi ");
    expect({ code: after.exitCode, stdout: after.stdout }).not.toMatchObject({ code: 0, stdout: original.stdout });
  }, 120_000);
});
