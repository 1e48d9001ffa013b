import { accessSync, constants, statSync } from "node:fs";

/**
 * Finds executables the way execvp does: a name with a `/` is taken as it is, any other name is
 * looked up in each PATH directory in turn. No shell is involved, so a PATH without `sh` still
 * gets a true answer for every other tool (a `sh -c 'command -v'` check reports them all missing).
 * PATH directories are system directories (the Nix store, /usr), never a probed mount.
 */
export function findOnPath(name: string, pathEnv: string | undefined = process.env.PATH): string | undefined {
  const candidates = name.includes("/")
    ? [name]
    : (pathEnv ?? "")
        .split(":")
        .filter(Boolean)
        .map((dir) => `${dir}/${name}`);
  return candidates.find(isExecutableFile);
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The tools of `names` that PATH does not provide, in the order given. */
export function missingTools(names: readonly string[], pathEnv: string | undefined = process.env.PATH): string[] {
  return names.filter((name) => findOnPath(name, pathEnv) === undefined);
}
