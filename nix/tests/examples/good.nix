# A diskless NixOS node whose /var is an NVMe/TCP volume on the same RDS that serves the
# cluster's PersistentVolumes. The driver manages only `pvc-` subsystems; the node's own
# `nixos-` volumes are protected. Evaluates cleanly (see docs/install.md for the command).
{
  imports = [ ../../module.nix ];

  networking.hostName = "node-a";
  system.stateVersion = "24.11";
  boot.loader.grub.enable = false;
  fileSystems."/" = { device = "none"; fsType = "tmpfs"; options = [ "mode=755" ]; };
  fileSystems."/var" = { device = "/dev/disk/by-label/node-a-var"; fsType = "ext4"; };

  services.rds-csi = {
    enable = true;
    nqnPrefix = "nqn.2000-02.com.mikrotik:pvc-";
    systemNqns = [ "nqn.2000-02.com.mikrotik:nixos-node-a-root" "nqn.2000-02.com.mikrotik:nixos-node-a-var" ];
    protectedNqns = [ "nqn.2000-02.com.mikrotik:nixos-*" ];
    hostNqn = "nqn.2014-08.org.nvmexpress:uuid:6f1c1d2e-8a4b-4c3d-9e5f-0a1b2c3d4e5f";
    node.enable = true;
    doctor.enable = true;
    gc.enable = true;
  };
}
