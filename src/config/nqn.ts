import * as v from "valibot";

/**
 * NQN rules. The same rules exist once more in Nix (nix/nqn-rules.nix); both are checked against
 * test/fixtures/nqn-cases.json so they cannot drift.
 */
export const NQN_MAX_BYTES = 223;
export const GO_DRIVER_DEFAULT_PREFIX = "nqn.2000-02.com.mikrotik:pvc-";

const PRINTABLE_NO_SPACE = /^[\x21-\x7e]+$/;
/** `nqn.yyyy-mm.reverse.domain:` and nothing after the colon: would cover every subsystem of that vendor. */
const DOMAIN_ONLY = /^nqn\.\d{4}-\d{2}\.[^:]+:$/;

/** Why a prefix is unacceptable, or null. Messages name the danger, not just the rule. */
export function nqnPrefixProblem(prefix: string): string | null {
  if (prefix.length === 0)
    return "is empty; an empty prefix would match every NVMe subsystem, including the node's own system volumes";
  if (!PRINTABLE_NO_SPACE.test(prefix)) return "must be printable ASCII without whitespace";
  if (!prefix.startsWith("nqn.")) return "must start with 'nqn.'";
  if (!prefix.includes(":")) return "must contain ':' (nqn.<yyyy-mm>.<reverse-domain>:<name>)";
  if (Buffer.byteLength(prefix) > NQN_MAX_BYTES) return `is longer than ${NQN_MAX_BYTES} bytes`;
  if (DOMAIN_ONLY.test(prefix))
    return "is only a domain (nothing after ':'); it would cover every volume of that vendor, including diskless nodes' system volumes";
  return null;
}

export const NqnPrefixSchema = v.pipe(
  v.string(),
  v.check(
    (s) => nqnPrefixProblem(s) === null,
    (issue) => nqnPrefixProblem(String(issue.input)) ?? "is invalid",
  ),
);

/** A full NQN (not a prefix): same character rules, no "too broad" rule. */
export function nqnProblem(nqn: string): string | null {
  if (!PRINTABLE_NO_SPACE.test(nqn)) return "must be printable ASCII without whitespace";
  if (!nqn.startsWith("nqn.")) return "must start with 'nqn.'";
  if (!nqn.includes(":")) return "must contain ':'";
  if (Buffer.byteLength(nqn) > NQN_MAX_BYTES) return `is longer than ${NQN_MAX_BYTES} bytes`;
  return null;
}

/** Protected patterns are NQNs or globs (`*` any run, `?` one character). */
export function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/**
 * Why a protected pattern is unacceptable, or null. The environment and flag forms of the list are
 * comma-separated, so a comma inside one pattern would silently split it in two.
 */
export function protectedPatternProblem(pattern: string): string | null {
  if (!PRINTABLE_NO_SPACE.test(pattern) || !pattern.startsWith("nqn."))
    return "must start with 'nqn.' and be printable ASCII without whitespace";
  if (pattern.includes(",")) return "must not contain ',' (lists of patterns are comma-separated)";
  return null;
}

export const ProtectedPatternSchema = v.pipe(
  v.string(),
  v.check(
    (s) => protectedPatternProblem(s) === null,
    (issue) => protectedPatternProblem(String(issue.input)) ?? "is invalid",
  ),
);

export interface NqnPolicy {
  prefix: string;
  protectedPatterns: readonly string[];
}

export type NqnVerdict =
  | { managed: true }
  | { managed: false; reason: "outside-prefix" | "protected-pattern" | "backs-system-mount"; detail: string };

/**
 * The one gate every connect, disconnect and collection passes. `systemNqns` are subsystems that
 * back a mount outside the kubelet and staging trees, discovered at the moment of asking.
 */
export function classifyNqn(nqn: string, policy: NqnPolicy, systemNqns: ReadonlySet<string> = new Set()): NqnVerdict {
  if (!policy.prefix || !nqn.startsWith(policy.prefix)) {
    return { managed: false, reason: "outside-prefix", detail: `does not start with managed prefix ${policy.prefix}` };
  }
  for (const p of policy.protectedPatterns) {
    if (globToRegExp(p).test(nqn))
      return { managed: false, reason: "protected-pattern", detail: `matches protected pattern ${p}` };
  }
  if (systemNqns.has(nqn)) {
    return { managed: false, reason: "backs-system-mount", detail: "backs a mount outside the kubelet tree" };
  }
  return { managed: true };
}

/**
 * Could some NQN match both the glob and the prefix? Used to refuse a configuration where the
 * protected list and the managed prefix overlap (the operator meant them to be disjoint).
 */
export function patternOverlapsPrefix(pattern: string, prefix: string): boolean {
  // Compare literal characters up to the first wildcard of either side.
  for (let i = 0; i < Math.min(pattern.length, prefix.length); i++) {
    const c = pattern[i]!;
    if (c === "*") return true;
    if (c === "?") continue;
    if (c !== prefix[i]) return false;
  }
  // The pattern's literal head covers the whole prefix (or vice versa): overlap if the pattern can go on.
  return pattern.length >= prefix.length || pattern.endsWith("*");
}

/**
 * The start-up check of a whole policy: the prefix's own rules, each pattern's rules, and no
 * pattern that could match anything the prefix covers (docs/install.md promises all three).
 * One line naming the option and the value, or null.
 */
export function nqnPolicyProblem(policy: NqnPolicy): string | null {
  const prefixProblem = nqnPrefixProblem(policy.prefix);
  if (prefixProblem) return `option --nqn-prefix ${JSON.stringify(policy.prefix)} ${prefixProblem}`;
  for (const pattern of policy.protectedPatterns) {
    const problem = protectedPatternProblem(pattern);
    if (problem) return `option --protected-nqn ${JSON.stringify(pattern)} ${problem}`;
    if (patternOverlapsPrefix(pattern, policy.prefix)) {
      return `option --protected-nqn ${JSON.stringify(pattern)} overlaps --nqn-prefix ${JSON.stringify(policy.prefix)}: some NQN would be both managed and protected; protected NQNs must lie outside the managed prefix`;
    }
  }
  return null;
}
