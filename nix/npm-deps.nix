# The npm dependencies the build needs, in the form nixpkgs' importNpmLock takes: package.json and
# package-lock.json with the devDependencies left out (the build needs no TypeScript, and Bun comes
# from nixpkgs, not from the `bun` npm package whose install script downloads a binary) and a
# `resolved` URL on every entry. This lock file omits `resolved` (npm's
# omit-lockfile-registry-resolved); an entry's tarball is then the registry's
# <registry>/<name>/-/<unscoped name>-<version>.tgz, the URL npm itself fetched (its cache index
# records it; test/deploy/nix-package.test.ts checks every URL and hash against that index).
# importNpmLock fetches each one with fetchurl pinned by the entry's own `integrity` (sha512), so
# every dependency is a fixed-output derivation and there is no aggregate npmDepsHash to update.
{ lib
, packageJson
, packageLock
, registry ? "https://registry.npmjs.org"
}:

let
  isDev = entry: (entry.dev or false) || (entry.devOptional or false);

  # "node_modules/a/node_modules/@scope/b" installs @scope/b (unless the entry names an alias).
  nameOf = path: entry: entry.name or (lib.last (lib.splitString "node_modules/" path));
  tarballUrl = name: version: "${registry}/${name}/-/${lib.last (lib.splitString "/" name)}-${version}.tgz";

  withResolved = path: entry:
    if entry ? resolved || (entry.link or false) then entry
    else entry // { resolved = tarballUrl (nameOf path entry) entry.version; };

  dependencies = lib.mapAttrs withResolved
    (lib.filterAttrs (path: entry: path != "" && !isDev entry) packageLock.packages);
in
{
  package = removeAttrs packageJson [ "devDependencies" ];
  packageLock = packageLock // {
    packages = dependencies // { "" = removeAttrs packageLock.packages."" [ "devDependencies" ]; };
  };
}
