# Defaults shared by module.nix and checked against the binary's src/config/defaults.ts by
# test/deploy/nix.test.ts. Plain data and two small functions: importable without nixpkgs.
rec {
  driverName = "rds.csi.srvlab.io";
  stateDir = "/var/lib/rds-csi";
  kubeletDir = "/var/lib/kubelet";
  # The binary's --shutdown-grace default, in seconds.
  shutdownGraceSeconds = 30;

  endpointFor = kubeletDir: driverName: "unix://${kubeletDir}/plugins/${driverName}/csi.sock";

  # systemd must not SIGKILL the node plugin while it is still draining: the drain itself may
  # take the whole grace, and the commands it waits on have their own deadlines on top.
  stopMarginSeconds = 15;
  timeoutStopSecFor = graceSeconds: graceSeconds + stopMarginSeconds;

  endpoint = endpointFor kubeletDir driverName;
}
