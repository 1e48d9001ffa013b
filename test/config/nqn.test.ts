import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import cases from "../fixtures/nqn-cases.json";
import {
  NqnPrefixSchema,
  ProtectedPatternSchema,
  classifyNqn,
  nqnPolicyProblem,
  patternOverlapsPrefix,
} from "../../src/config/nqn.ts";

describe("NQN prefix rules (shared table with nix/nqn-rules.nix)", () => {
  for (const c of cases.prefixes) {
    test(`${c.ok ? "accepts" : "refuses"} ${JSON.stringify(c.prefix).slice(0, 60)} (${c.why})`, () => {
      expect(v.safeParse(NqnPrefixSchema, c.prefix).success).toBe(c.ok);
    });
  }
  for (const c of cases.patterns) {
    test(`pattern ${c.ok ? "accepted" : "refused"}: ${JSON.stringify(c.pattern)} (${c.why})`, () => {
      expect(v.safeParse(ProtectedPatternSchema, c.pattern).success).toBe(c.ok);
    });
  }
  for (const c of cases.overlaps) {
    test(`pattern ${c.pattern} ${c.overlap ? "overlaps" : "is disjoint from"} ${c.prefix}`, () => {
      expect(patternOverlapsPrefix(c.pattern, c.prefix)).toBe(c.overlap);
    });
  }
});

describe("nqnPolicyProblem: the start-up check of prefix and protection together", () => {
  const prefix = "nqn.2000-02.com.mikrotik:pvc-";
  test("a disjoint policy passes", () => {
    expect(nqnPolicyProblem({ prefix, protectedPatterns: ["nqn.2000-02.com.mikrotik:nixos-*"] })).toBeNull();
    expect(nqnPolicyProblem({ prefix, protectedPatterns: [] })).toBeNull();
  });
  test("every overlapping row of the shared table is refused in one line naming both options", () => {
    for (const c of cases.overlaps) {
      const problem = nqnPolicyProblem({ prefix: c.prefix, protectedPatterns: [c.pattern] });
      if (!c.overlap) {
        expect(problem).toBeNull();
        continue;
      }
      expect(problem).toStartWith(
        `option --protected-nqn ${JSON.stringify(c.pattern)} overlaps --nqn-prefix ${JSON.stringify(c.prefix)}`,
      );
      expect(problem).not.toContain("\n");
    }
  });
  test("a bad prefix or a comma pattern is named before any overlap", () => {
    expect(nqnPolicyProblem({ prefix: "nqn.2000-02.com.mikrotik:", protectedPatterns: [] })).toStartWith(
      'option --nqn-prefix "nqn.2000-02.com.mikrotik:" is only a domain',
    );
    expect(nqnPolicyProblem({ prefix, protectedPatterns: ["nqn.2000-02.com.mikrotik:a,b"] })).toBe(
      `option --protected-nqn "nqn.2000-02.com.mikrotik:a,b" must not contain ',' (lists of patterns are comma-separated)`,
    );
  });
});

describe("classifyNqn: the gate for connect, disconnect and collect", () => {
  const policy = {
    prefix: "nqn.2000-02.com.mikrotik:pvc-",
    protectedPatterns: ["nqn.2000-02.com.mikrotik:pvc-system-*"],
  };
  test("managed only when prefixed, unprotected and not backing a system mount", () => {
    expect(classifyNqn("nqn.2000-02.com.mikrotik:pvc-1", policy)).toEqual({ managed: true });
    expect(classifyNqn("nqn.2000-02.com.mikrotik:nixos-var", policy)).toMatchObject({
      managed: false,
      reason: "outside-prefix",
    });
    expect(classifyNqn("nqn.2000-02.com.mikrotik:pvc-system-var", policy)).toMatchObject({
      managed: false,
      reason: "protected-pattern",
    });
    expect(
      classifyNqn("nqn.2000-02.com.mikrotik:pvc-2", policy, new Set(["nqn.2000-02.com.mikrotik:pvc-2"])),
    ).toMatchObject({ managed: false, reason: "backs-system-mount" });
  });
  test("an empty prefix manages nothing (incident 1)", () => {
    expect(classifyNqn("nqn.2000-02.com.mikrotik:nixos-root", { prefix: "", protectedPatterns: [] })).toMatchObject({
      managed: false,
    });
  });
  test("property: for random NQNs, managed implies prefix match, no protected match, not system", () => {
    const rnd = (n: number) => Math.floor(Math.random() * n);
    const alphabet = "abp-vc:.*?0";
    const word = () => Array.from({ length: 1 + rnd(6) }, () => alphabet[rnd(alphabet.length)]).join("");
    for (let i = 0; i < 3000; i++) {
      const prefix = `nqn.2000-02.com.mikrotik:${word().replace(/[*?]/g, "")}`;
      const patterns = Array.from({ length: rnd(3) }, () => `nqn.2000-02.com.mikrotik:${word()}`);
      const nqn = `nqn.2000-02.com.mikrotik:${word().replace(/[*?]/g, "")}${word().replace(/[*?]/g, "")}`;
      const system = new Set(rnd(4) === 0 ? [nqn] : []);
      const verdict = classifyNqn(nqn, { prefix, protectedPatterns: patterns }, system);
      if (verdict.managed) {
        expect(nqn.startsWith(prefix)).toBe(true);
        expect(system.has(nqn)).toBe(false);
        for (const p of patterns) {
          const re = new RegExp(
            `^${p
              .replace(/[.+^${}()|[\]\\]/g, "\\$&")
              .replace(/\*/g, ".*")
              .replace(/\?/g, ".")}$`,
          );
          expect(re.test(nqn)).toBe(false);
        }
      }
    }
  });
});
