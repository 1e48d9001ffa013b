# NixOS module for rds-csi. What can destroy a node (the managed NQN prefix, the protected
# NQNs, a config file that could carry either) reaches the binary only from this module's own
# options, checked at evaluation time by nix/nqn-rules.nix (the rules the binary enforces at
# start); the assertions below also read the rendered units back, so neither `environment`,
# `extraArgs` nor a mkForce on the units can slip another value past them.
{ config, lib, pkgs, utils, ... }:

let
  cfg = config.services.rds-csi;
  rules = import ./nqn-rules.nix;
  defaults = import ./defaults.nix;
  runtimeTools = import ./runtime-tools.nix;

  inherit (lib) mkOption mkEnableOption mkIf types;

  endpoint = defaults.endpointFor cfg.kubeletDir cfg.driverName;

  # The binary refuses a relative path and any `..` component (src/config/schemas.ts AbsolutePath).
  absolutePath = types.addCheck types.str (s: lib.hasPrefix "/" s && !(lib.elem ".." (lib.splitString "/" s)))
    // { description = "absolute path without '..' components"; };

  # Everything the binary runs, for all three units (gc and doctor use the same probes and nvme).
  toolPackages = map (name: pkgs.${name}) (lib.unique (lib.attrValues runtimeTools));

  protection = lib.unique (cfg.systemNqns ++ cfg.protectedNqns);

  # The settings only this module may give. The environment form of the list is comma-separated;
  # nqn-rules.nix refuses commas inside a pattern, so joining cannot split one.
  guardedEnvironment = {
    RDS_CSI_NQN_PREFIX = cfg.nqnPrefix;
    RDS_CSI_PROTECTED_NQN = lib.concatStringsSep "," protection;
  };
  # Other names the binary reads for the same settings (CSI_MANAGED_NQN_PREFIX is the Go
  # driver's), and the config file, which could carry them all.
  forbiddenEnvironment = [ "CSI_MANAGED_NQN_PREFIX" "RDS_CSI_CONFIG" ];

  # Set from their options, so the options' types are the only way in.
  moduleEnvironment = {
    RDS_CSI_DRIVER_NAME = cfg.driverName;
    RDS_CSI_NODE_ID = cfg.nodeId;
    RDS_CSI_STATE_DIR = cfg.stateDir;
    RDS_CSI_KUBELET_DIR = cfg.kubeletDir;
    RDS_CSI_ENDPOINT = endpoint;
    RDS_CSI_LOG_LEVEL = cfg.logLevel;
    RDS_CSI_SHUTDOWN_GRACE = "${toString cfg.shutdownGrace}s";
  };
  unitEnvironment = cfg.environment // moduleEnvironment // guardedEnvironment;

  # An argument's option name as yargs reads it: `--nqnPrefix`, `--nqn_prefix=x` and
  # `--no-config` all name an option the module owns.
  optionNameOf = arg:
    let
      bare = lib.toLower (lib.replaceStrings [ "-" "_" ] [ "" "" ] (lib.head (lib.splitString "=" (lib.removePrefix "-" (lib.removePrefix "-" arg)))));
    in
    if lib.hasPrefix "-" arg then [ bare (lib.removePrefix "no" bare) ] else [ ];
  ownedFlags = {
    nqnprefix = "nqnPrefix";
    protectednqn = "protectedNqns or systemNqns";
    config = "the module's options (a config file could carry the prefix or the protection)";
    endpoint = "kubeletDir and driverName";
    drivername = "driverName";
    nodeid = "nodeId";
    statedir = "stateDir";
    kubeletdir = "kubeletDir";
    loglevel = "logLevel";
    shutdowngrace = "shutdownGrace";
  };
  argProblems = option: extraOwned: args:
    lib.concatMap
      (arg:
        let owner = lib.findFirst (n: n != null) null (map (n: (ownedFlags // extraOwned).${n} or null) (optionNameOf arg)); in
        lib.optional (owner != null)
          "${option} contains ${builtins.toJSON arg}: set it through services.rds-csi.${owner} instead, so the module's checks apply to it.")
      args;

  exe = lib.getExe' cfg.package "rds-csi";
  # systemd, not a shell, parses ExecStart: quote and escape `%` and `$` its way.
  command = mode: args: utils.escapeSystemdExecArgs ([ exe mode ] ++ args);

  units = {
    rds-csi-node = { enabled = cfg.node.enable; execStart = command "csi-node" cfg.node.extraArgs; };
    rds-csi-doctor = { enabled = cfg.doctor.enable; execStart = doctorCommand; };
    rds-csi-gc = { enabled = cfg.gc.enable; execStart = command "gc" (lib.optional cfg.gc.force "--force" ++ cfg.gc.extraArgs); };
  };
  doctorCommand = command "doctor" ([ "--prometheus-textfile" "${cfg.doctor.textfileDir}/rds_csi.prom" ] ++ cfg.doctor.extraArgs);

  # Reads the units back after every module has had its say (mkForce included).
  renderedProblems = lib.concatLists (lib.mapAttrsToList
    (name: unit:
      let
        svc = config.systemd.services.${name};
        env = svc.environment;
        where = "systemd.services.${name}";
      in
      lib.optionals unit.enabled (
        lib.concatLists (lib.mapAttrsToList
          (key: want: lib.optional ((env.${key} or null) != want)
            "${where}.environment.${key} is ${builtins.toJSON (env.${key} or null)}, not ${builtins.toJSON want} from services.rds-csi: the prefix and protection can only be set through the module's options.")
          guardedEnvironment)
        ++ map (key: "${where}.environment sets ${key}: the prefix, protection and config file can only be set through services.rds-csi options.")
          (lib.filter (key: env ? ${key}) forbiddenEnvironment)
        ++ lib.optional ((svc.serviceConfig.ExecStart or null) != unit.execStart)
          "${where}.serviceConfig.ExecStart was changed outside services.rds-csi; use services.rds-csi.*.extraArgs."
        ++ map (key: "${where}.serviceConfig.${key} is set: it could carry RDS_CSI_NQN_PREFIX or RDS_CSI_PROTECTED_NQN past the module's checks.")
          (lib.filter (key: svc.serviceConfig ? ${key}) [ "Environment" "EnvironmentFile" ])
      ))
    units)
  ++ map (key: "systemd.globalEnvironment sets ${key}: the prefix, protection and config file can only be set through services.rds-csi options.")
    (lib.filter (key: config.systemd.globalEnvironment ? ${key}) (lib.attrNames guardedEnvironment ++ forbiddenEnvironment));

  environmentProblems = map
    (key: "services.rds-csi.environment sets ${key}: ${if guardedEnvironment ? ${key} || lib.elem key forbiddenEnvironment
      then "the prefix, protection and config file can only be set through services.rds-csi.nqnPrefix, protectedNqns and systemNqns"
      else "it has its own services.rds-csi option, whose type the binary agrees with"}.")
    (lib.filter (key: guardedEnvironment ? ${key} || moduleEnvironment ? ${key} || lib.elem key forbiddenEnvironment) (lib.attrNames cfg.environment));

  extraArgsProblems =
    argProblems "services.rds-csi.node.extraArgs" { } cfg.node.extraArgs
    ++ argProblems "services.rds-csi.doctor.extraArgs" { prometheustextfile = "doctor.textfileDir"; } cfg.doctor.extraArgs
    ++ argProblems "services.rds-csi.gc.extraArgs" {
      force = "gc.force";
      ignorelock = "gc.force with node.enable = false (acting beside a live node plugin is for an operator at the console)";
    } cfg.gc.extraArgs;

  asAssertions = map (message: { assertion = false; inherit message; });

  # A periodic oneshot with its timer; used by doctor and gc.
  periodic = name: description: interval: execStart: successExitStatus: {
    services.${name} = {
      inherit description;
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      path = toolPackages;
      environment = unitEnvironment;
      serviceConfig = {
        Type = "oneshot";
        ExecStart = execStart;
      } // lib.optionalAttrs (successExitStatus != null) { SuccessExitStatus = successExitStatus; };
    };
    timers.${name} = {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "2min";
        OnUnitActiveSec = interval;
        RandomizedDelaySec = "30s";
      };
    };
  };

  extraArgsOption = mode: mkOption {
    type = types.listOf types.str;
    default = [ ];
    description = ''
      Extra arguments of `rds-csi ${mode}` only (see `rds-csi ${mode} --help`). Options the module
      sets itself (prefix, protection, config file, endpoint, driver name, node id, directories,
      log level, grace) are refused here: use their options.
    '';
  };
in
{
  options.services.rds-csi = {
    enable = mkEnableOption "the rds-csi driver for MikroTik RDS volumes over NVMe/TCP";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The rds-csi package (must provide bin/rds-csi).";
    };

    nqnPrefix = mkOption {
      # No default on purpose: a wrong default is how a node loses its own disks.
      type = types.str;
      example = "nqn.2000-02.com.mikrotik:pvc-";
      description = ''
        Managed NQN prefix. The driver connects, disconnects and collects only NVMe subsystems whose
        NQN starts with it. Must start with `nqn.`, contain `:`, have something after the colon,
        be printable ASCII and at most 223 bytes. It must not cover the node's own system volumes
        (NQNs with `nixos-` after the colon, or any of `systemNqns`).
      '';
    };

    systemNqns = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "nqn.2000-02.com.mikrotik:nixos-node-a-root" "nqn.2000-02.com.mikrotik:nixos-node-a-var" ];
      description = ''
        NQNs (or globs) of this node's own boot and system volumes. They are protected (the driver
        never touches them) and must lie outside `nqnPrefix`; evaluation warns when neither this
        nor `protectedNqns` is set.
      '';
    };

    protectedNqns = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "nqn.2000-02.com.mikrotik:nixos-*" ];
      description = ''
        More NQNs or globs (`*`, `?`; no `,`) the driver never touches, e.g. every node's system
        volumes. Evaluation fails if any of them could also match the managed prefix.
      '';
    };

    driverName = mkOption {
      type = types.strMatching "[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?";
      default = defaults.driverName;
      description = "CSI driver name (DNS-1123 subdomain, at most 63 characters); must match the CSIDriver object and the StorageClasses.";
    };

    nodeId = mkOption {
      type = types.strMatching "[A-Za-z0-9][A-Za-z0-9._-]{0,127}";
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "Kubernetes node name reported by NodeGetInfo; must equal the kubelet's node name.";
    };

    hostNqn = mkOption {
      type = types.nullOr (types.strMatching "nqn\\.[0-9]{4}-[0-9]{2}\\.[!-~]+:[!-~]+");
      default = null;
      example = "nqn.2014-08.org.nvmexpress:uuid:0b2d7c4e-3f1a-4a55-9d3e-2f6c1b8a7e90";
      description = ''
        This host's NVMe NQN, written to /etc/nvme/hostnqn (read by nvme-cli and by the node plugin,
        which puts it into its node id so exports can be restricted to this host). Set it on
        diskless nodes: a generated one on a tmpfs root changes at every boot.
      '';
    };

    stateDir = mkOption {
      # A string, not types.path: a path literal here would be copied into the Nix store.
      type = absolutePath;
      default = defaults.stateDir;
      description = "Staging records, locks and the admin socket.";
    };

    kubeletDir = mkOption {
      type = absolutePath;
      default = defaults.kubeletDir;
      description = "The kubelet's root directory (k3s: /var/lib/kubelet as well unless changed).";
    };

    shutdownGrace = mkOption {
      type = types.ints.positive;
      default = defaults.shutdownGraceSeconds;
      description = ''
        Seconds the node plugin waits for in-flight operations after SIGTERM. systemd's
        TimeoutStopSec is set ${toString defaults.stopMarginSeconds} seconds above it.
      '';
    };

    logLevel = mkOption {
      type = types.enum [ "trace" "debug" "info" "warn" "error" "fatal" "silent" ];
      default = "info";
      description = "Log level of every rds-csi unit.";
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = { RDS_CSI_LOG_FORMAT = "json"; };
      description = ''
        Extra environment for every rds-csi unit, for options the module has no setting of its own
        for. Variables of the module's own options (and RDS_CSI_CONFIG) are refused.
      '';
    };

    node = {
      enable = mkEnableOption "the CSI node plugin (rds-csi csi-node) as a systemd service";
      extraArgs = extraArgsOption "csi-node";
    };

    doctor = {
      enable = mkEnableOption "a periodic `rds-csi doctor` writing a Prometheus textfile";
      interval = mkOption {
        type = types.str;
        default = "5min";
        description = "How often doctor runs (systemd time span).";
      };
      textfileDir = mkOption {
        type = absolutePath;
        default = "/var/lib/prometheus-node-exporter-text";
        description = "Directory read by node_exporter's textfile collector.";
      };
      extraArgs = extraArgsOption "doctor";
    };

    gc = {
      enable = mkEnableOption "a periodic `rds-csi gc` (the plan only reads, so it runs beside the node plugin)";
      interval = mkOption {
        type = types.str;
        default = "1h";
        description = "How often gc runs (systemd time span).";
      };
      force = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Let gc act on its plan. Off by default: gc only logs what it would do, and an operator
          decides. Acting needs the node plugin stopped (a volume it is staging looks like a leak),
          so this is refused together with node.enable.
        '';
      };
      extraArgs = extraArgsOption "gc";
    };
  };

  config = mkIf cfg.enable (lib.mkMerge [
    {
      assertions =
        rules.assertionsFor { inherit (cfg) nqnPrefix protectedNqns systemNqns; }
        ++ asAssertions (environmentProblems ++ extraArgsProblems ++ renderedProblems)
        ++ [
          {
            assertion = !(cfg.gc.force && cfg.node.enable);
            message = "services.rds-csi.gc.force cannot be used with services.rds-csi.node.enable: gc acts only while the node plugin is stopped, so its timer would fail every run. Keep the hourly plan (gc.force = false) and act by hand: systemctl stop rds-csi-node; rds-csi gc --force; systemctl start rds-csi-node.";
          }
        ];

      warnings = rules.warningsFor { inherit (cfg) nqnPrefix protectedNqns systemNqns; }
        ++ lib.optional (cfg.node.enable && cfg.hostNqn == null && !(config.environment.etc ? "nvme/hostnqn"))
        "services.rds-csi.hostNqn is unset and /etc/nvme/hostnqn is not managed: nvme-cli generates a host NQN that a tmpfs root loses at every boot, and exports restricted to this host stop matching. Set services.rds-csi.hostNqn.";

      environment.systemPackages = [ cfg.package ];
      environment.etc = mkIf (cfg.hostNqn != null) { "nvme/hostnqn".text = "${cfg.hostNqn}\n"; };

      systemd.tmpfiles.rules = [ "d ${cfg.stateDir} 0700 root root - -" ];
    }

    (mkIf cfg.node.enable {
      boot.kernelModules = [ "nvme-tcp" ];

      systemd.services.rds-csi-node = {
        description = "rds-csi CSI node plugin";
        wantedBy = [ "multi-user.target" ];
        after = [ "network-online.target" ];
        wants = [ "network-online.target" ];
        # The kubelet must find the plugin socket when it starts, and must stop before the plugin
        # so unpublish/unstage requests during node shutdown still have someone to answer them.
        # NixOS runs both k3s roles as k3s.service.
        before = [ "kubelet.service" "k3s.service" ];
        path = toolPackages;
        environment = unitEnvironment;
        startLimitIntervalSec = 300;
        startLimitBurst = 5;
        serviceConfig = {
          ExecStart = units.rds-csi-node.execStart;
          Restart = "on-failure";
          RestartSec = 5;
          KillSignal = "SIGTERM";
          # SIGTERM to the main process only: it drains, while mkfs/fsck/nvme children it is
          # waiting on are left to finish instead of being killed mid-write.
          KillMode = "mixed";
          TimeoutStopSec = defaults.timeoutStopSecFor cfg.shutdownGrace;
          # No PrivateMounts/ProtectSystem: mounts made here must propagate to the kubelet and pods.
        };
      };
    })

    (mkIf cfg.doctor.enable {
      systemd = periodic "rds-csi-doctor" "rds-csi health report for node_exporter" cfg.doctor.interval doctorCommand
        # doctor exits 1 for warnings (already in the metrics), 2 for critical findings and 3 when
        # the textfile could not be written: only 1 is a success for the unit.
        "1"
      // { tmpfiles.rules = [ "d ${cfg.doctor.textfileDir} 0755 root root - -" ]; };
    })

    (mkIf cfg.gc.enable {
      systemd = periodic "rds-csi-gc" "rds-csi garbage collection (${if cfg.gc.force then "acting" else "plan only"})" cfg.gc.interval
        units.rds-csi-gc.execStart
        # The plan exits 1 when there is something to collect: logged for an operator, not a failure
        # of the unit. Acting exits 1 when a step failed or was skipped, which is.
        (if cfg.gc.force then null else "1");
    })
  ]);
}
