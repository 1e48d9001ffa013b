# NixOS VM test of the module, for a machine with nixpkgs and KVM:
#
#   nix-build -E 'let pkgs = import <nixpkgs> { }; in pkgs.callPackage ./nix/tests/vm.nix { }'
#
# IT HAS NOT BEEN RUN: the machine this repository is developed and tested on has neither nixpkgs
# nor a Nix store that can build (only nix-instantiate with a dummy store and nixpkgs' lib). What
# runs there instead is test/deploy/nix-module.test.ts: the module evaluated with lib.evalModules
# and stub NixOS options, each rendered ExecStart run with the real binary.
#
# What it checks: one VM is both an NVMe/TCP target (the kernel's nvmet over loopback) and a node.
# The target exports a `nixos-root` and a `pvc-` subsystem, like an RDS serving a diskless node
# and its cluster. The node unit becomes active and its Probe is ready; NodeStageVolume and
# NodeUnstageVolume through the socket connect, format, mount and disconnect the `pvc-` volume
# and never touch `nixos-root`; the gc and doctor units succeed beside the running node plugin;
# and the dangerous configurations fail evaluation with the module's messages.
{ pkgs
, lib ? pkgs.lib
, rds-csi ? pkgs.callPackage ../package.nix { }
}:

let
  vendor = "nqn.2000-02.com.mikrotik";
  pvcId = "pvc-5f0e6a55-1111-4000-8000-00000000cafe";
  pvcNqn = "${vendor}:${pvcId}";
  rootNqn = "${vendor}:nixos-root";
  endpoint = "/var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock";
  protoDir = ../../src/csi;

  # The module's own settings for this node; the dangerous variants below change one thing each.
  settings = {
    enable = true;
    package = rds-csi;
    nqnPrefix = "${vendor}:pvc-";
    systemNqns = [ rootNqn ];
    hostNqn = "nqn.2014-08.org.nvmexpress:uuid:6f1c1d2e-8a4b-4c3d-9e5f-0a1b2c3d4e5f";
    node.enable = true;
    doctor.enable = true;
    gc.enable = true;
  };

  # Evaluates a node configuration and returns its failed assertion messages.
  failedAssertions = extra:
    let
      system = import (pkgs.path + "/nixos/lib/eval-config.nix") {
        inherit (pkgs.stdenv.hostPlatform) system;
        modules = [
          ../module.nix
          {
            boot.loader.grub.enable = false;
            fileSystems."/" = { device = "none"; fsType = "tmpfs"; };
            system.stateVersion = "24.11";
            services.rds-csi = lib.recursiveUpdate settings extra;
          }
        ];
      };
    in
    map (a: a.message) (lib.filter (a: !a.assertion) system.config.assertions);

  dangerous = {
    domain-only = failedAssertions { nqnPrefix = "${vendor}:"; };
    covers-nixos = failedAssertions { nqnPrefix = "${vendor}:n"; };
    environment-bypass = failedAssertions { environment.RDS_CSI_NQN_PREFIX = "${vendor}:"; };
    extra-args-bypass = failedAssertions { node.extraArgs = [ "--nqn-prefix" "${vendor}:" ]; };
    comma = failedAssertions { protectedNqns = [ "${vendor}:nixos-a,${vendor}:nixos-b" ]; };
  };
  dangerousChecks = lib.mapAttrsToList
    (name: messages: assert lib.assertMsg (messages != [ ]) "dangerous configuration ${name} evaluated cleanly"; name)
    dangerous;

  grpc = method: body: "grpcurl -plaintext -unix -import-path ${protoDir} -proto csi.proto -d '${builtins.toJSON body}' ${endpoint} csi.v1.${method}";
in
pkgs.testers.runNixOSTest {
  # Forcing the list evaluates every dangerous configuration: one that evaluates cleanly stops the
  # build here, with its name.
  name = builtins.deepSeq dangerousChecks "rds-csi";

  nodes.machine = { pkgs, ... }: {
    imports = [ ../module.nix ];
    services.rds-csi = settings;
    boot.kernelModules = [ "nvmet" "nvmet-tcp" "nvme-tcp" ];
    environment.systemPackages = [ pkgs.grpcurl pkgs.nvme-cli ];
    virtualisation.emptyDiskImages = [ 64 64 ];
  };

  testScript = ''
    import json

    machine.wait_for_unit("multi-user.target")

    # nvmet over loopback: /dev/vdb is the node's "root" volume, /dev/vdc a PersistentVolume.
    machine.succeed(
      "cd /sys/kernel/config/nvmet"
      " && for s in ${rootNqn}:/dev/vdb ${pvcNqn}:/dev/vdc; do"
      "   nqn=''${s%:*}; dev=''${s##*:};"
      "   mkdir subsystems/$nqn && echo 1 > subsystems/$nqn/attr_allow_any_host"
      "   && mkdir subsystems/$nqn/namespaces/1 && echo $dev > subsystems/$nqn/namespaces/1/device_path"
      "   && echo 1 > subsystems/$nqn/namespaces/1/enable; done"
      " && mkdir ports/1 && echo 127.0.0.1 > ports/1/addr_traddr && echo tcp > ports/1/addr_trtype"
      " && echo 4420 > ports/1/addr_trsvcid && echo ipv4 > ports/1/addr_adrfam"
      " && ln -s ../../subsystems/${rootNqn} ports/1/subsystems/ && ln -s ../../subsystems/${pvcNqn} ports/1/subsystems/"
    )
    # The node's "system volume" is connected, as on a diskless node.
    machine.succeed("nvme connect -t tcp -a 127.0.0.1 -s 4420 -n ${rootNqn}")

    machine.wait_for_unit("rds-csi-node.service")
    machine.wait_for_file("${endpoint}")
    probe = json.loads(machine.succeed("${grpc "Identity/Probe" { }}"))
    assert probe.get("ready") is True, probe

    stage = {
      "volume_id": "${pvcId}",
      "staging_target_path": "/var/lib/kubelet/plugins/kubernetes.io/csi/rds.csi.srvlab.io/x/globalmount",
      "volume_capability": {"mount": {"fs_type": "ext4"}, "access_mode": {"mode": "SINGLE_NODE_WRITER"}},
      "volume_context": {"nqn": "${pvcNqn}", "nvmeAddress": "127.0.0.1", "nvmePort": "4420"},
    }
    machine.succeed("mkdir -p " + stage["staging_target_path"])
    machine.succeed(f"grpcurl -plaintext -unix -import-path ${protoDir} -proto csi.proto -d '{json.dumps(stage)}' ${endpoint} csi.v1.Node/NodeStageVolume")
    machine.succeed("findmnt " + stage["staging_target_path"])
    unstage = {"volume_id": stage["volume_id"], "staging_target_path": stage["staging_target_path"]}
    machine.succeed(f"grpcurl -plaintext -unix -import-path ${protoDir} -proto csi.proto -d '{json.dumps(unstage)}' ${endpoint} csi.v1.Node/NodeUnstageVolume")
    machine.fail("nvme list-subsys | grep -F ${pvcNqn}")
    machine.succeed("nvme list-subsys | grep -F ${rootNqn}")

    # The timers' units, started now, beside the running node plugin.
    machine.succeed("systemctl start rds-csi-gc.service")
    machine.succeed("systemctl start rds-csi-doctor.service")
    machine.succeed("test -s /var/lib/prometheus-node-exporter-text/rds_csi.prom")
    machine.succeed("nvme list-subsys | grep -F ${rootNqn}")
    machine.succeed("systemctl is-active rds-csi-node.service")
  '';
}
