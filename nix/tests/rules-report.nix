# What nix/nqn-rules.nix says about arbitrary inputs, as JSON, so test/deploy/nix.test.ts can
# compare it case by case with src/config/nqn.ts on generated inputs (not only the fixed table).
#   nix-instantiate --eval --strict --json nix/tests/rules-report.nix --arg inputFile ./inputs.json
# inputs.json: { "prefixes": [string], "patterns": [string], "overlaps": [{ "pattern", "prefix" }] }
{ inputFile }:
let
  rules = import ../nqn-rules.nix;
  input = builtins.fromJSON (builtins.readFile inputFile);
in
{
  prefixProblems = map rules.prefixProblem input.prefixes;
  patternProblems = map rules.patternProblem input.patterns;
  overlaps = map (row: rules.patternOverlapsPrefix row.pattern row.prefix) input.overlaps;
}
