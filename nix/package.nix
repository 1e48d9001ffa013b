# Builds rds-csi from this repository with nixpkgs' Bun.
#
# Reproducibility: the npm dependencies come from package-lock.json through fetchNpmDeps, a
# fixed-output derivation (its hash pins every tarball), and npmConfigHook installs them into
# node_modules offline with install scripts disabled. Bun itself is nixpkgs' `bun`, not the npm
# package in devDependencies (whose install script would download a binary). After changing
# package-lock.json, set npmDepsHash to lib.fakeHash, build once, and copy the hash Nix reports.
#
#   nix-build -E 'with import <nixpkgs> {}; callPackage ./nix/package.nix {}'
#
# The alternative, wrapping a binary built elsewhere with scripts/build, is nix/package-prebuilt.nix.
{ lib
, stdenv
, bun
, nodejs
, fetchNpmDeps
, npmHooks
, npmDepsHash ? lib.fakeHash
}:

let
  packageJson = lib.importJSON ../package.json;
in
stdenv.mkDerivation (finalAttrs: {
  pname = "rds-csi";
  inherit (packageJson) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../package.json
      ../package-lock.json
      ../tsconfig.json
      ../src
      ../scripts
      (lib.fileset.maybeMissing ../bunfig.toml)
    ];
  };

  npmDeps = fetchNpmDeps {
    inherit (finalAttrs) src;
    name = "rds-csi-${finalAttrs.version}-npm-deps";
    hash = npmDepsHash;
  };

  nativeBuildInputs = [ bun nodejs npmHooks.npmConfigHook ];

  buildPhase = ''
    runHook preBuild
    patchShebangs scripts
    scripts/build
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall
    install -Dm755 dist/rds-csi $out/bin/rds-csi
    runHook postInstall
  '';

  # A `bun build --compile` executable is the Bun runtime with the bundle appended; strip and
  # patchelf rewrite the file and cut the bundle off. The runtime is nixpkgs' bun, already linked
  # against the store's glibc, so there is nothing to patch.
  dontStrip = true;
  dontPatchELF = true;

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    $out/bin/rds-csi version
    runHook postInstallCheck
  '';

  meta = {
    description = "Kubernetes CSI driver for MikroTik RDS volumes over NVMe/TCP, with gc and doctor";
    license = lib.licenses.asl20;
    mainProgram = "rds-csi";
    platforms = [ "x86_64-linux" "aarch64-linux" ];
  };
})
