# Defaults shared by module.nix and checked against the binary's src/config/defaults.ts by
# test/deploy/nix.test.ts. Plain data and two small functions: importable without nixpkgs.
rec {
  driverName = "rds.csi.srvlab.io";
  stateDir = "/var/lib/rds-csi";
  kubeletDir = "/var/lib/kubelet";
  # The binary's --shutdown-grace default, in seconds.
  shutdownGraceSeconds = 30;

  endpointFor = kubeletDir: driverName: "unix://${kubeletDir}/plugins/${driverName}/csi.sock";

  # systemd must not SIGKILL the node plugin while it is still shutting down: the drain may take
  # the whole grace, then each of its five closers (node lock, probe registry, CSI server, admin
  # socket, metrics server) may take up to 5 s (src/runtime/shutdown.ts), plus 5 s to exit.
  closerCount = 5;
  closerTimeoutSeconds = 5;
  stopMarginSeconds = closerCount * closerTimeoutSeconds + 5;
  timeoutStopSecFor = graceSeconds: graceSeconds + stopMarginSeconds;

  endpoint = endpointFor kubeletDir driverName;
}
