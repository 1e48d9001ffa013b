# NixOS module for rds-csi. The managed NQN prefix is checked at evaluation time by
# nix/nqn-rules.nix (the same rules the binary enforces at startup), so a configuration that
# would let the driver touch the node's own NVMe/TCP system volumes never builds.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.rds-csi;
  rules = import ./nqn-rules.nix;
  defaults = import ./defaults.nix;

  inherit (lib) mkOption mkEnableOption mkIf types;

  endpoint = defaults.endpointFor cfg.kubeletDir cfg.driverName;

  # Every option reaches the binary through RDS_CSI_<NAME>, so the three units share one
  # environment and the command lines stay short enough to read in `systemctl status`.
  baseEnvironment = {
    RDS_CSI_NQN_PREFIX = cfg.nqnPrefix;
    RDS_CSI_DRIVER_NAME = cfg.driverName;
    RDS_CSI_NODE_ID = cfg.nodeId;
    RDS_CSI_STATE_DIR = cfg.stateDir;
    RDS_CSI_KUBELET_DIR = cfg.kubeletDir;
    RDS_CSI_ENDPOINT = endpoint;
    RDS_CSI_LOG_LEVEL = cfg.logLevel;
    RDS_CSI_SHUTDOWN_GRACE = "${toString cfg.shutdownGrace}s";
  } // lib.optionalAttrs (cfg.protectedNqns != [ ]) {
    RDS_CSI_PROTECTED_NQN = lib.concatStringsSep "," cfg.protectedNqns;
  } // cfg.environment;

  # What csi-node, gc and doctor call: nvme connect/disconnect, blkid/fsck/mkfs, mount/umount.
  nodeTools = with pkgs; [ nvme-cli e2fsprogs xfsprogs util-linux kmod ];

  exe = "${cfg.package}/bin/rds-csi";
  command = mode: args: lib.escapeShellArgs ([ exe mode ] ++ args ++ cfg.extraArgs);

  # A periodic oneshot with its timer; used by doctor and gc.
  periodic = name: description: interval: execStart: extraServiceConfig: {
    services.${name} = {
      inherit description;
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      path = nodeTools;
      environment = baseEnvironment;
      serviceConfig = {
        Type = "oneshot";
        ExecStart = execStart;
      } // extraServiceConfig;
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
        be printable ASCII and at most 223 bytes. It must not cover the node's own system volumes.
      '';
    };

    protectedNqns = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "nqn.2000-02.com.mikrotik:nixos-*" ];
      description = ''
        NQNs or globs (`*`, `?`) of the node's own system volumes. The driver never touches them,
        and evaluation fails if any of them could also match the managed prefix.
      '';
    };

    driverName = mkOption {
      type = types.str;
      default = defaults.driverName;
      description = "CSI driver name; must match the CSIDriver object and the StorageClasses.";
    };

    nodeId = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "Kubernetes node name reported by NodeGetInfo; must equal the kubelet's node name.";
    };

    stateDir = mkOption {
      # A string, not types.path: a path literal here would be copied into the Nix store.
      type = types.str;
      default = defaults.stateDir;
      description = "Staging records, locks and the admin socket.";
    };

    kubeletDir = mkOption {
      type = types.str;
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

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "--breaker-threshold" "5" ];
      description = "Extra command-line arguments appended to every rds-csi invocation.";
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = { RDS_CSI_LOG_FORMAT = "json"; };
      description = "Extra environment for every rds-csi unit (overrides the module's own RDS_CSI_* values).";
    };

    node.enable = mkEnableOption "the CSI node plugin (rds-csi csi-node) as a systemd service";

    doctor = {
      enable = mkEnableOption "a periodic `rds-csi doctor` writing a Prometheus textfile";
      interval = mkOption {
        type = types.str;
        default = "5min";
        description = "How often doctor runs (systemd time span).";
      };
      textfileDir = mkOption {
        type = types.str;
        default = "/var/lib/prometheus-node-exporter-text";
        description = "Directory read by node_exporter's textfile collector.";
      };
    };

    gc = {
      enable = mkEnableOption "a periodic `rds-csi gc`";
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
          decides (`rds-csi gc --force` by hand, or this option once the plans have been read).
        '';
      };
    };
  };

  config = mkIf cfg.enable (lib.mkMerge [
    {
      assertions = rules.assertionsFor { inherit (cfg) nqnPrefix protectedNqns; } ++ [
        {
          assertion = cfg.nodeId != "";
          message = "services.rds-csi.nodeId is empty (networking.hostName is unset): set it to this node's Kubernetes node name.";
        }
        {
          assertion = lib.hasPrefix "/" cfg.stateDir && lib.hasPrefix "/" cfg.kubeletDir;
          message = "services.rds-csi.stateDir and services.rds-csi.kubeletDir must be absolute paths.";
        }
      ];

      environment.systemPackages = [ cfg.package ];

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
        before = [ "kubelet.service" "k3s.service" "k3s-agent.service" ];
        path = nodeTools;
        environment = baseEnvironment;
        unitConfig = {
          StartLimitIntervalSec = 300;
          StartLimitBurst = 5;
        };
        serviceConfig = {
          ExecStart = command "csi-node" [ ];
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
      systemd = periodic "rds-csi-doctor" "rds-csi health report for node_exporter" cfg.doctor.interval
        (command "doctor" [ "--prometheus-textfile" "${cfg.doctor.textfileDir}/rds_csi.prom" ])
        # doctor exits 1 for warnings (already in the metrics) and 2 for critical findings:
        # only a critical finding marks the unit failed.
        { SuccessExitStatus = "1"; }
      // { tmpfiles.rules = [ "d ${cfg.doctor.textfileDir} 0755 root root - -" ]; };
    })

    (mkIf cfg.gc.enable {
      systemd = periodic "rds-csi-gc" "rds-csi garbage collection (${if cfg.gc.force then "acting" else "plan only"})" cfg.gc.interval
        (command "gc" (lib.optional cfg.gc.force "--force")) { };
    })
  ]);
}
