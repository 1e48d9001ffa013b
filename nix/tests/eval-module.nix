# Evaluates nix/module.nix the way NixOS would, with nixpkgs' own lib.evalModules and the option
# stubs of nixos-stubs.nix, and returns what a test needs: failed assertions, warnings, the
# rendered units and timers, /etc entries. `toplevel` fails like a NixOS build does
# ("Failed assertions: …"), for `nix-instantiate --eval` of the examples.
#
#   nix-instantiate --store dummy:// --eval --strict --json nix/tests/eval-module.nix \
#     --arg configuration ./nix/tests/examples/good.nix -A result
#
# `packages` maps nixpkgs attribute names to directories (the tests give host tools linked into
# bin/); any package not given is a placeholder path that exists nowhere.
{ configuration
, packages ? { }
, nixpkgsLib ? ../../../shared/vendor/nixpkgs-lib/lib
}:
let
  lib = import nixpkgsLib;

  stubPackage = name: {
    type = "derivation";
    inherit name;
    outPath = packages.${name} or "/nonexistent/${name}";
    meta.mainProgram = name;
  };
  pkgs = lib.genAttrs [
    "bash" "coreutils" "diffutils" "findutils" "gnugrep" "gnused" "systemd"
    "nvme-cli" "e2fsprogs" "xfsprogs" "util-linux" "kmod" "rds-csi"
  ] stubPackage // {
    callPackage = _: _: stubPackage "rds-csi";
  };

  # NixOS's utils.escapeSystemdExecArgs (nixos/lib/utils.nix): each argument as a JSON string,
  # which systemd's C-style double-quoted words accept, with `%` and `$` doubled so systemd
  # expands neither specifiers nor variables.
  utils.escapeSystemdExecArgs = lib.concatMapStringsSep " "
    (arg: lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON (toString arg)));

  evaluated = lib.evalModules {
    modules = [ (import ./nixos-stubs.nix { inherit pkgs; }) ../module.nix configuration ];
    specialArgs = { inherit pkgs utils; };
  };
  config = evaluated.config;

  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);

  result = {
    inherit failedAssertions;
    inherit (config) warnings;
    services = builtins.mapAttrs (_: s: { inherit (s) text environment serviceConfig before path; }) config.systemd.services;
    timers = builtins.mapAttrs (_: t: { inherit (t) timerConfig wantedBy; }) config.systemd.timers;
    etc = builtins.mapAttrs (_: e: e.text) config.environment.etc;
    tmpfiles = config.systemd.tmpfiles.rules;
    kernelModules = config.boot.kernelModules;
  };
in
{
  inherit result;
  toplevel =
    if failedAssertions != [ ] then throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failedAssertions}"
    else result;
}
