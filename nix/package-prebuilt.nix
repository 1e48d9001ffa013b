# Wraps an rds-csi binary built elsewhere (scripts/build on a glibc distribution, or taken out of
# the container image) instead of building from source.
#
#   nix-build -E 'with import <nixpkgs> {}; callPackage ./nix/package-prebuilt.nix { binary = ./dist/rds-csi; }'
#
# The binary's ELF interpreter is /lib64/ld-linux-*.so, which NixOS does not have: only the
# interpreter is rewritten. Running it through ld.so instead would not work, because the
# executable finds its appended bundle through /proc/self/exe. The install check runs it, so a
# binary that patchelf damaged fails the build instead of being installed.
{ lib
, stdenv
, patchelf
, binary
, version ? "prebuilt"
}:

stdenv.mkDerivation {
  pname = "rds-csi";
  inherit version;

  dontUnpack = true;
  nativeBuildInputs = [ patchelf ];

  installPhase = ''
    runHook preInstall
    install -Dm755 ${binary} $out/bin/rds-csi
    patchelf --set-interpreter "$(cat $NIX_CC/nix-support/dynamic-linker)" $out/bin/rds-csi
    runHook postInstall
  '';

  dontStrip = true;
  dontPatchELF = true;

  doInstallCheck = true;
  installCheckPhase = ''
    $out/bin/rds-csi version
  '';

  meta = {
    description = "rds-csi from a prebuilt binary";
    license = lib.licenses.asl20;
    mainProgram = "rds-csi";
    platforms = [ "x86_64-linux" "aarch64-linux" ];
  };
}
