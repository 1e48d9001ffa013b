# Every program rds-csi runs, and the nixpkgs package that provides it. Plain data: module.nix
# and image.nix put these packages on PATH, and test/deploy/nix-module.test.ts checks the names
# against the binary's own tool check (run with an empty PATH, it names every tool it needs) and
# runs the binary under the resulting PATH.
{
  # Mount probes batch `stat -f` in a child shell (src/mount/probe.ts); nixpkgs' bash has bin/sh.
  sh = "bash";
  cat = "coreutils";
  stat = "coreutils";
  mknod = "coreutils";
  stdbuf = "coreutils";
  # Kubelet paths: parents resolved by realpath before anything is made or removed (src/node/kubelet-paths.ts).
  realpath = "coreutils";
  mkdir = "coreutils";
  rmdir = "coreutils";
  rm = "coreutils";
  # Compares a device's first blocks with zeroes before "could not tell" becomes "empty".
  cmp = "diffutils";
  nvme = "nvme-cli";
  "mkfs.ext4" = "e2fsprogs";
  "fsck.ext4" = "e2fsprogs";
  resize2fs = "e2fsprogs";
  dumpe2fs = "e2fsprogs";
  "mkfs.xfs" = "xfsprogs";
  xfs_repair = "xfsprogs";
  xfs_growfs = "xfsprogs";
  blkid = "util-linux";
  blockdev = "util-linux";
  losetup = "util-linux";
  mount = "util-linux";
  umount = "util-linux";
  dmesg = "util-linux";
}
