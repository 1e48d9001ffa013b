# Builds rds-csi from this repository with nixpkgs' Bun, in the sandbox (no network).
#
#   nix-build -E 'with import <nixpkgs> {}; callPackage ./nix/package.nix {}'
#
# Dependencies: nix/npm-deps.nix turns package-lock.json into importNpmLock's input, so each npm
# tarball is a fixed-output fetch pinned by the lock file's own sha512 `integrity`; after changing
# package-lock.json there is no hash to update here. npm installs them offline with install scripts
# off (npm's own --ignore-scripts in install, npmRebuildFlags for the rebuild). Bun is nixpkgs'
# `bun`: the devDependencies, the `bun` npm package among them, are not installed at all.
#
# The alternative, wrapping a binary built elsewhere with scripts/build, is nix/package-prebuilt.nix.
{ lib
, stdenv
, bun
, nodejs
, importNpmLock
}:

let
  packageJson = lib.importJSON ../package.json;
  npmDeps = import ./npm-deps.nix {
    inherit lib packageJson;
    packageLock = lib.importJSON ../package-lock.json;
  };
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

  npmDeps = importNpmLock { inherit (npmDeps) package packageLock; };
  npmRebuildFlags = [ "--ignore-scripts" ];

  nativeBuildInputs = [ bun nodejs importNpmLock.npmConfigHook ];

  # scripts/build takes Bun from $BUN.
  env.BUN = lib.getExe bun;

  buildPhase = ''
    runHook preBuild
    export HOME=$TMPDIR
    patchShebangs scripts
    scripts/build
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall
    install -Dm755 dist/rds-csi $out/bin/rds-csi
    runHook postInstall
  '';

  # A `bun build --compile` executable is the Bun runtime with the bundle in an ELF section
  # (`.bun`) at the end; strip would drop that section and leave a bare Bun that runs nothing
  # of ours. patchelf rewrites the file the same way. The runtime is nixpkgs' bun, already linked
  # against the store's glibc, so there is nothing to patch.
  dontStrip = true;
  dontPatchELF = true;

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    $out/bin/rds-csi version | grep -F 'rds-csi ${finalAttrs.version}'
    runHook postInstallCheck
  '';

  meta = {
    description = "Kubernetes CSI driver for MikroTik RDS volumes over NVMe/TCP, with gc and doctor";
    license = lib.licenses.asl20;
    mainProgram = "rds-csi";
    platforms = [ "x86_64-linux" "aarch64-linux" ];
  };
})
