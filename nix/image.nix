# Container image built with Nix instead of the Dockerfile; same entrypoint and node tools.
#   nix-build -E 'with import <nixpkgs> {}; callPackage ./nix/image.nix {}' && docker load < result
{ lib
, callPackage
, dockerTools
, nvme-cli
, e2fsprogs
, xfsprogs
, util-linux
, kmod
, cacert
, rds-csi ? callPackage ./package.nix { }
}:

dockerTools.buildLayeredImage {
  name = "rds-csi";
  tag = rds-csi.version;
  contents = [ rds-csi nvme-cli e2fsprogs xfsprogs util-linux kmod cacert dockerTools.binSh ];
  # The node plugin writes its staging records and locks here; the DaemonSet mounts the host's.
  extraCommands = "mkdir -p var/lib/rds-csi tmp && chmod 1777 tmp";
  config = {
    Entrypoint = [ "${lib.getExe rds-csi}" ];
    Env = [ "PATH=/bin:/sbin" "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt" ];
  };
}
