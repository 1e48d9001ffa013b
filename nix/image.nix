# Container image built with Nix instead of the Dockerfile; same entrypoint, and every program the
# binary runs (nix/runtime-tools.nix, the list the NixOS module's units use too).
#   nix-build -E 'with import <nixpkgs> {}; callPackage ./nix/image.nix {}' && docker load < result
{ lib
, pkgs
, callPackage
, dockerTools
, cacert
, rds-csi ? callPackage ./package.nix { }
}:

let
  runtimeTools = import ./runtime-tools.nix;
  toolPackages = map (name: pkgs.${name}) (lib.unique (lib.attrValues runtimeTools));
in
dockerTools.buildLayeredImage {
  name = "rds-csi";
  tag = rds-csi.version;
  contents = [ rds-csi cacert dockerTools.binSh ] ++ toolPackages;
  # The node plugin writes its staging records and locks here; the DaemonSet mounts the host's.
  extraCommands = "mkdir -p var/lib/rds-csi tmp && chmod 1777 tmp";
  config = {
    Entrypoint = [ "${lib.getExe rds-csi}" ];
    Env = [ "PATH=/bin:/sbin" "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt" ];
  };
}
