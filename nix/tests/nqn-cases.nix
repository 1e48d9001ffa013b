# Checks nix/nqn-rules.nix against the shared accept/reject table and the two example
# configurations. Evaluates to a summary, or throws naming every row that disagrees.
#   nix-instantiate --eval --strict --json nix/tests/nqn-cases.nix
{ casesFile ? ../../test/fixtures/nqn-cases.json }:
let
  rules = import ../nqn-rules.nix;
  cases = builtins.fromJSON (builtins.readFile casesFile);

  prefixFailures = builtins.concatMap
    (row:
      let problem = rules.prefixProblem row.prefix; in
      if (problem == null) == row.ok then [ ]
      else [ "prefix ${builtins.toJSON row.prefix}: expected ok=${builtins.toJSON row.ok}, nqn-rules.nix says ${builtins.toJSON problem}" ])
    cases.prefixes;

  patternFailures = builtins.concatMap
    (row:
      let problem = rules.patternProblem row.pattern; in
      if (problem == null) == row.ok then [ ]
      else [ "pattern ${builtins.toJSON row.pattern}: expected ok=${builtins.toJSON row.ok}, nqn-rules.nix says ${builtins.toJSON problem}" ])
    cases.patterns;

  overlapFailures = builtins.concatMap
    (row:
      let got = rules.patternOverlapsPrefix row.pattern row.prefix; in
      if got == row.overlap then [ ]
      else [ "overlap of ${builtins.toJSON row.pattern} with ${builtins.toJSON row.prefix}: expected ${builtins.toJSON row.overlap}, got ${builtins.toJSON got}" ])
    cases.overlaps;

  # The examples are NixOS modules written as plain attribute sets, so their settings can be read
  # without evaluating the module system (which needs nixpkgs).
  settingsOf = file: (import file).services.rds-csi;
  problemsOf = file: let s = settingsOf file; in
    rules.problemsFor { inherit (s) nqnPrefix; protectedNqns = s.protectedNqns or [ ]; systemNqns = s.systemNqns or [ ]; };

  expectedDangerous = [
    ("services.rds-csi.nqnPrefix \"nqn.2000-02.com.mikrotik:\" is only a domain (nothing after ':'); it would cover every volume of that vendor, including diskless nodes' system volumes. "
      + "The node plugin and gc only ever connect, disconnect or collect NVMe subsystems inside this prefix; "
      + "on a diskless node whose root or /var is an NVMe/TCP volume on the same RDS, a prefix that covers it lets the driver disconnect the node's own disks.")
    ("services.rds-csi.protectedNqns entry \"nqn.2000-02.com.mikrotik:nixos-*\" overlaps services.rds-csi.nqnPrefix \"nqn.2000-02.com.mikrotik:\": "
      + "some NQN would be both managed and protected. Protected NQNs are the node's own system volumes and must lie outside the managed prefix "
      + "(for example nqnPrefix \"nqn.2000-02.com.mikrotik:pvc-\" next to protectedNqns [ \"nqn.2000-02.com.mikrotik:nixos-*\" ]).")
  ];

  goodProblems = problemsOf ./examples/good.nix;
  dangerousProblems = problemsOf ./examples/dangerous.nix;

  exampleFailures =
    (if goodProblems == [ ] then [ ] else [ "examples/good.nix should pass but fails with ${builtins.toJSON goodProblems}" ])
    ++ (if dangerousProblems == expectedDangerous then [ ] else [ "examples/dangerous.nix should fail with ${builtins.toJSON expectedDangerous} but gives ${builtins.toJSON dangerousProblems}" ]);

  failures = prefixFailures ++ patternFailures ++ overlapFailures ++ exampleFailures;
in
if failures != [ ] then throw "nqn-rules.nix disagrees:\n  ${builtins.concatStringsSep "\n  " failures}"
else {
  prefixes = builtins.length cases.prefixes;
  patterns = builtins.length cases.patterns;
  overlaps = builtins.length cases.overlaps;
  examples = { good = goodProblems; dangerous = dangerousProblems; };
}
