/** Defaults that other artefacts (deploy/, nix/) must agree with; test/deploy checks them against this file. */
export const DEFAULTS = {
  driverName: "rds.csi.srvlab.io",
  endpoint: "unix:///var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock",
  shutdownGraceSeconds: 30,
  stateDir: "/var/lib/rds-csi",
  kubeletDir: "/var/lib/kubelet",
  // Not <state-dir>/volumes: that directory holds the node's staging records.
  fileDir: "/var/lib/rds-csi/disks",
  socketMode: "0600",
} as const;
