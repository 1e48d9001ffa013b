import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { DEFAULT_CLOSE_TIMEOUT_MS } from "../../src/runtime/shutdown.ts";
import { nqnPrefixProblem, patternOverlapsPrefix, protectedPatternProblem } from "../../src/config/nqn.ts";
import { NIX_DIR, ROOT, nix as nixIn, nixJson as nixJsonIn } from "./nix-eval.ts";

const CASES_FILE = join(ROOT, "test/fixtures/nqn-cases.json");

let scratch = "";
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "rds-csi-nix-"));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

const nix = (args: string[]) => nixIn(args, scratch);
const nixJson = (args: string[]) => nixJsonIn(args, scratch);

function nixFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".nix"))
    .map((e) => join(e.parentPath, e.name));
}

describe("nix files", () => {
  const files = nixFiles(NIX_DIR);

  test("the expected files exist", () => {
    const names = files.map((f) => f.slice(NIX_DIR.length + 1)).sort();
    for (const want of [
      "defaults.nix",
      "module.nix",
      "nqn-rules.nix",
      "package.nix",
      "tests/nqn-cases.nix",
      "tests/examples/good.nix",
      "tests/examples/dangerous.nix",
      "runtime-tools.nix",
      "npm-deps.nix",
      "tests/eval-module.nix",
      "tests/nixos-stubs.nix",
      "tests/vm.nix",
    ]) {
      expect(names).toContain(want);
    }
  });

  test.each(nixFiles(NIX_DIR).map((f) => [f.slice(ROOT.length + 1), f]))("%s parses", async (_name, file) => {
    const r = await nix(["--parse", file]);
    expect({ exitCode: r.exitCode, stderr: r.stderr }).toEqual({ exitCode: 0, stderr: "" });
  });

  test("a syntax error is reported by the same check", async () => {
    const broken = join(scratch, "broken.nix");
    writeFileSync(broken, "{ a = 1; b = ; }\n");
    const r = await nix(["--parse", broken]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("syntax error");
  });
});

interface Cases {
  prefixes: { prefix: string; ok: boolean }[];
  patterns: { pattern: string; ok: boolean }[];
  overlaps: { pattern: string; prefix: string; overlap: boolean }[];
}
const cases: Cases = JSON.parse(readFileSync(CASES_FILE, "utf8"));

describe("nix/nqn-rules.nix against the shared table", () => {
  test("every row of test/fixtures/nqn-cases.json agrees, and the examples give the expected verdicts", async () => {
    const out = (await nixJson([join(NIX_DIR, "tests/nqn-cases.nix"), "--arg", "casesFile", CASES_FILE])) as {
      prefixes: number;
      patterns: number;
      overlaps: number;
      examples: { good: string[]; dangerous: string[] };
    };
    expect(out.prefixes).toBe(cases.prefixes.length);
    expect(out.patterns).toBe(cases.patterns.length);
    expect(out.overlaps).toBe(cases.overlaps.length);
    expect(out.examples.good).toEqual([]);
    expect(out.examples.dangerous).toHaveLength(2);
    expect(out.examples.dangerous[0]).toStartWith(
      'services.rds-csi.nqnPrefix "nqn.2000-02.com.mikrotik:" is only a domain',
    );
    expect(out.examples.dangerous[0]).toContain("disconnect the node's own disks");
    expect(out.examples.dangerous[1]).toStartWith(
      'services.rds-csi.protectedNqns entry "nqn.2000-02.com.mikrotik:nixos-*" overlaps',
    );
  });

  test("a table row that the Nix rules disagree with fails the evaluation and is named", async () => {
    const flipped: Cases = structuredClone(cases);
    const row = flipped.prefixes.find((p) => p.prefix === "nqn.2000-02.com.mikrotik:")!;
    row.ok = true;
    flipped.overlaps[0]!.overlap = !flipped.overlaps[0]!.overlap;
    const file = join(scratch, "flipped.json");
    writeFileSync(file, JSON.stringify(flipped));
    const r = await nix([
      "--eval",
      "--strict",
      "--json",
      join(NIX_DIR, "tests/nqn-cases.nix"),
      "--arg",
      "casesFile",
      file,
    ]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(
      'prefix "nqn.2000-02.com.mikrotik:": expected ok=true, nqn-rules.nix says "is only a domain',
    );
    expect(r.stderr).toContain(
      `overlap of "${flipped.overlaps[0]!.pattern}" with "${flipped.overlaps[0]!.prefix}": expected true, got false`,
    );
  });
});

/** Deterministic variations around the table's strings: edits at every position, wildcards, truncations. */
function generatedInputs() {
  const bases = [
    ...new Set([
      ...cases.prefixes.map((p) => p.prefix),
      ...cases.patterns.map((p) => p.pattern),
      ...cases.overlaps.flatMap((o) => [o.pattern, o.prefix]),
    ]),
  ].filter((s) => s.length < 60);
  const inserts = ["", ":", ".", "*", "?", " ", "a", "-", "0", "é", "\t", "nqn.", ","];
  const prefixes = new Set<string>();
  for (const b of bases) {
    for (let i = 0; i <= b.length; i++) {
      prefixes.add(b.slice(0, i));
      for (const ins of inserts) prefixes.add(b.slice(0, i) + ins + b.slice(i + 1));
    }
  }
  prefixes.add("nqn.2024-01.io.example:" + "b".repeat(200));
  prefixes.add("nqn.2024-01.io.example:" + "b".repeat(201));
  const managed = ["nqn.2000-02.com.mikrotik:pvc-", "nqn.2024-01.io.example:vol", "nqn.2000-02.com.mikrotik:p"];
  const overlaps: { pattern: string; prefix: string }[] = [];
  for (const prefix of managed) {
    for (const base of [prefix, "nqn.2000-02.com.mikrotik:nixos-", "nqn.2014-08.org.nvmexpress:"]) {
      for (let i = 0; i <= base.length; i++) {
        for (const tail of ["", "*", "?", "x", "?*", "-*", "c-*", "c-x"]) {
          overlaps.push({ pattern: base.slice(0, i) + tail, prefix });
          overlaps.push({ pattern: base.slice(0, i) + "?" + base.slice(i + 1) + tail, prefix });
          overlaps.push({ pattern: base.slice(0, i) + "*" + base.slice(i + 1), prefix });
        }
      }
    }
  }
  return { prefixes: [...prefixes], patterns: [...prefixes], overlaps };
}

describe("nix/nqn-rules.nix against src/config/nqn.ts on generated inputs", () => {
  test("same verdict and same message for every prefix, pattern and overlap", async () => {
    const input = generatedInputs();
    const file = join(scratch, "inputs.json");
    writeFileSync(file, JSON.stringify(input));
    const out = (await nixJson([join(NIX_DIR, "tests/rules-report.nix"), "--arg", "inputFile", file])) as {
      prefixProblems: (string | null)[];
      patternProblems: (string | null)[];
      overlaps: boolean[];
    };
    const disagreements: string[] = [];
    input.prefixes.forEach((p, i) => {
      const ts = nqnPrefixProblem(p);
      if (ts !== out.prefixProblems[i])
        disagreements.push(`prefix ${JSON.stringify(p)}: ts=${ts} nix=${out.prefixProblems[i]}`);
    });
    input.patterns.forEach((p, i) => {
      const ts = protectedPatternProblem(p);
      if (ts !== out.patternProblems[i])
        disagreements.push(`pattern ${JSON.stringify(p)}: ts=${ts} nix=${out.patternProblems[i]}`);
    });
    input.overlaps.forEach((o, i) => {
      const ts = patternOverlapsPrefix(o.pattern, o.prefix);
      if (ts !== out.overlaps[i]) disagreements.push(`overlap ${JSON.stringify(o)}: ts=${ts} nix=${out.overlaps[i]}`);
    });
    expect(disagreements).toEqual([]);
    // Both verdicts occur, so the comparison is not trivially all-accept or all-reject.
    expect(out.prefixProblems.filter((p) => p === null).length).toBeGreaterThan(20);
    expect(out.prefixProblems.filter((p) => p !== null).length).toBeGreaterThan(20);
    expect(out.overlaps.filter(Boolean).length).toBeGreaterThan(20);
    expect(out.overlaps.filter((o) => !o).length).toBeGreaterThan(20);
    expect(input.overlaps.length).toBeGreaterThan(1000);
  });
});

describe("nix/defaults.nix and the module's wiring", () => {
  test("defaults.nix names the binary's defaults, and systemd waits longer than the drain", async () => {
    const expr = `let d = import ${join(NIX_DIR, "defaults.nix")}; in {
      inherit (d) driverName stateDir kubeletDir shutdownGraceSeconds endpoint closerCount closerTimeoutSeconds;
      stopAtDefault = d.timeoutStopSecFor d.shutdownGraceSeconds;
      stopAtLongGrace = d.timeoutStopSecFor 600;
    }`;
    const d = (await nixJson(["-E", expr])) as Record<string, string | number>;
    expect(d.driverName).toBe(DEFAULTS.driverName);
    expect(d.stateDir).toBe(DEFAULTS.stateDir);
    expect(d.kubeletDir).toBe(DEFAULTS.kubeletDir);
    expect(d.endpoint).toBe(DEFAULTS.endpoint);
    expect(d.shutdownGraceSeconds).toBe(DEFAULTS.shutdownGraceSeconds);
    expect(d.closerTimeoutSeconds).toBe(DEFAULT_CLOSE_TIMEOUT_MS / 1000);
    expect(d.stopAtDefault as number).toBeGreaterThan(DEFAULTS.shutdownGraceSeconds);
    expect(d.stopAtLongGrace as number).toBeGreaterThan(600);
    // Every closer may use its whole bound after the drain (src/runtime/shutdown.ts).
    expect((d.stopAtDefault as number) - DEFAULTS.shutdownGraceSeconds).toBeGreaterThan(
      ((d.closerCount as number) * DEFAULT_CLOSE_TIMEOUT_MS) / 1000,
    );
  });
  // The module itself is evaluated with nixpkgs' lib in test/deploy/nix-module.test.ts.
});
