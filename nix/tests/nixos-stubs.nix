# Declarations of the few NixOS options nix/module.nix sets or reads, for evaluating it with
# nixpkgs' lib.evalModules alone (no nixpkgs checkout, no store). Where NixOS derives something
# the tests depend on, the stub derives it the same way; each such place names its source:
#  - a service's PATH: nixos/lib/systemd-lib.nix `serviceConfig` sets environment.PATH to
#    "${makeBinPath path}:${makeSearchPathOutput "bin" "sbin" path}", and `stage2ServiceConfig`
#    appends coreutils, findutils, gnugrep, gnused and systemd to every service's `path`;
#  - unit text: `serviceToUnit` writes one `Environment=` line per variable as the JSON string of
#    "NAME=value", then the serviceConfig keys; list values become repeated lines, bools
#    true/false (systemd-lib.nix `attrsToSection`/`toOption`);
#  - startLimitIntervalSec/startLimitBurst land in [Unit] (`unitConfig` in systemd-lib.nix).
{ pkgs }:
{ lib, config, ... }:
let
  inherit (lib) mkOption types;

  unitValue = types.oneOf [ types.bool types.int types.str (types.listOf (types.oneOf [ types.bool types.int types.str ])) ];
  render = value:
    if builtins.isBool value then (if value then "true" else "false")
    else toString value;
  section = attrs: lib.concatStrings (lib.mapAttrsToList
    (key: value: lib.concatMapStrings (v: "${key}=${render v}\n") (lib.toList value))
    (lib.filterAttrs (_: v: v != null) attrs));

  service = { name, config, ... }: {
    options = {
      description = mkOption { type = types.str; default = ""; };
      wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
      after = mkOption { type = types.listOf types.str; default = [ ]; };
      wants = mkOption { type = types.listOf types.str; default = [ ]; };
      before = mkOption { type = types.listOf types.str; default = [ ]; };
      path = mkOption { type = types.listOf types.package; default = [ ]; };
      environment = mkOption { type = types.attrsOf (types.nullOr types.str); default = { }; };
      startLimitIntervalSec = mkOption { type = types.nullOr types.int; default = null; };
      startLimitBurst = mkOption { type = types.nullOr types.int; default = null; };
      unitConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
      serviceConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
      text = mkOption { type = types.str; readOnly = true; };
    };
    config = {
      path = lib.mkAfter [ pkgs.coreutils pkgs.findutils pkgs.gnugrep pkgs.gnused pkgs.systemd ];
      environment.PATH = lib.mkIf (config.path != [ ]) "${lib.makeBinPath config.path}:${lib.makeSearchPathOutput "bin" "sbin" config.path}";
      text =
        "[Unit]\n"
        + section ({
          Description = if config.description == "" then null else config.description;
          After = if config.after == [ ] then null else toString config.after;
          Wants = if config.wants == [ ] then null else toString config.wants;
          Before = if config.before == [ ] then null else toString config.before;
          StartLimitIntervalSec = config.startLimitIntervalSec;
          StartLimitBurst = config.startLimitBurst;
        } // config.unitConfig)
        + "\n[Service]\n"
        + lib.concatStrings (lib.mapAttrsToList (n: v: lib.optionalString (v != null) "Environment=${builtins.toJSON "${n}=${v}"}\n") config.environment)
        + section config.serviceConfig
        + lib.optionalString (config.wantedBy != [ ]) "\n[Install]\nWantedBy=${toString config.wantedBy}\n";
    };
  };

  timer = { config, ... }: {
    options = {
      wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
      timerConfig = mkOption { type = types.attrsOf unitValue; default = { }; };
    };
  };

  etcEntry = { ... }: {
    options = {
      text = mkOption { type = types.nullOr types.lines; default = null; };
      source = mkOption { type = types.nullOr types.path; default = null; };
      mode = mkOption { type = types.str; default = "symlink"; };
    };
  };
in
{
  options = {
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    warnings = mkOption { type = types.listOf types.str; default = [ ]; };
    networking.hostName = mkOption { type = types.str; default = "nixos"; };
    system.stateVersion = mkOption { type = types.str; };
    boot.loader.grub.enable = mkOption { type = types.bool; default = true; };
    boot.kernelModules = mkOption { type = types.listOf types.str; default = [ ]; };
    fileSystems = mkOption { type = types.attrsOf types.anything; default = { }; };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
    environment.etc = mkOption { type = types.attrsOf (types.submodule etcEntry); default = { }; };
    systemd.globalEnvironment = mkOption { type = types.attrsOf types.str; default = { }; };
    systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
    systemd.services = mkOption { type = types.attrsOf (types.submodule service); default = { }; };
    systemd.timers = mkOption { type = types.attrsOf (types.submodule timer); default = { }; };
  };
}
