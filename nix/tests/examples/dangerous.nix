# The configuration that bricked a node with the Go driver: a prefix that is only the vendor's
# domain covers the node's own `nixos-` system volumes. The module must refuse to evaluate it.
{
  imports = [ ../../module.nix ];

  networking.hostName = "node-b";
  system.stateVersion = "24.11";
  boot.loader.grub.enable = false;
  fileSystems."/" = { device = "none"; fsType = "tmpfs"; options = [ "mode=755" ]; };
  fileSystems."/var" = { device = "/dev/disk/by-label/node-b-var"; fsType = "ext4"; };

  services.rds-csi = {
    enable = true;
    nqnPrefix = "nqn.2000-02.com.mikrotik:";
    protectedNqns = [ "nqn.2000-02.com.mikrotik:nixos-*" ];
    node.enable = true;
  };
}
