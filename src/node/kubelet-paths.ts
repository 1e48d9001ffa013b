import { posix } from "node:path";
import { completeStdout, describeFailure, ok, type Runner } from "../runtime/exec.ts";
import { invalidArgument, unavailable } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";

/**
 * Node RPCs act only inside the kubelet directory. A path from the CO is first checked on its own
 * (absolute, no `.`/`..`, no empty or over-long components, strictly below the kubelet dir), then
 * its parent is resolved physically in a child process (RESOLVE_SH): a symlink anywhere above the final
 * component (`pods/evil-link → /outside`) makes the resolved parent differ from the written one
 * and the request is refused before anything is created, mounted or removed.
 *
 * Only the parent is resolved: the final component may be the mount point of a dead volume, and
 * resolving it would stat that mount (incident 9). What sits at the final component is inspected
 * later with `stat` (no follow) and acted on only when it is ours.
 */
export interface KubeletPaths {
  /** Lexically checked and normalised path (no trailing slash), or INVALID_ARGUMENT naming the field. */
  lexical(field: string, raw: string): string;
  /** Refuses paths whose parent directories leave the kubelet dir through a symlink (one `sh` child). */
  confine(fields: Record<string, string>, signal?: AbortSignal): Promise<void>;
  /** The same check, for a caller that runs RESOLVE_SH in a child of its own (node/context.ts). */
  confinement(fields: Record<string, string>): Confinement;
  readonly root: string;
}

export interface Confinement {
  /** Paths for `resolve`: the kubelet dir, then each field's parent. */
  paths: string[];
  /** For error messages: what resolving these paths is for. */
  what: string;
  /** Refuses (INVALID_ARGUMENT naming the field) unless every parent resolves below the kubelet dir. */
  check(resolvedLines: string[]): void;
}

/**
 * A shell function, `resolve PATH`, printing PATH's physical path on one line, with shell builtins
 * only (no child of its own: it costs no exec, measured in scripts/bench-node.ts). It walks up to the
 * longest prefix `cd -P` can enter and appends the rest as written, like `realpath -m` (a parent that
 * does not exist yet resolves to itself). A component that is a symlink `cd` cannot follow (dangling,
 * or to a file) prints a line that never matches a path, so the request is refused.
 */
export const RESOLVE_SH = [
  "resolve() {",
  '  p=$1 rest=""',
  '  until cd -P -- "$p" 2>/dev/null; do',
  '    if [ -L "$p" ]; then printf "%s\\n" "(a symlink that does not lead to a directory: $p)"; return; fi',
  '    rest="/${p##*/}$rest"; p=${p%/*}; [ -n "$p" ] || p=/',
  "  done",
  '  o="${PWD%/}$rest"; printf "%s\\n" "${o:-/}"',
  "}",
].join("\n");

export interface KubeletPathsDeps {
  kubeletDir: string;
  runner: Runner;
  log: Logger;
  timeoutMs: number;
}

export function kubeletPaths(deps: KubeletPathsDeps): KubeletPaths {
  const root = posix.normalize(deps.kubeletDir).replace(/\/+$/, "") || "/";

  function lexical(field: string, raw: string): string {
    if (!raw.startsWith("/")) throw invalidArgument(field, `must be an absolute path, got ${JSON.stringify(raw)}`);
    // Control characters: a newline would split the realpath answer below, and no kubelet path has one.
    if (/[\x00-\x1f\x7f]/.test(raw))
      throw invalidArgument(field, `must not contain control characters, got ${JSON.stringify(raw)}`);
    const parts = raw.split("/").slice(1);
    if (parts.at(-1) === "") parts.pop();
    if (parts.some((p) => p === "" || p === "." || p === "..")) {
      throw invalidArgument(
        field,
        `must be a normalised absolute path (no '.', '..' or empty components), got ${JSON.stringify(raw)}`,
      );
    }
    // Linux's limits (PATH_MAX, NAME_MAX): past them every mkdir or mount fails halfway through.
    if (Buffer.byteLength(raw) > 4096) throw invalidArgument(field, `is longer than 4096 bytes`);
    const long = parts.find((p) => Buffer.byteLength(p) > 255);
    if (long !== undefined) throw invalidArgument(field, `has a component longer than 255 bytes`);
    const path = `/${parts.join("/")}`;
    const prefix = root === "/" ? "/" : `${root}/`;
    if (!path.startsWith(prefix) || path === root) {
      throw invalidArgument(field, `must lie inside the kubelet directory ${root}, got ${JSON.stringify(raw)}`);
    }
    return path;
  }

  /**
   * The paths that resolve the kubelet dir and every parent in one child (RESOLVE_SH), and the check
   * of its answer (one line per path, in order).
   */
  function confinement(fields: Record<string, string>): Confinement {
    const entries = Object.entries(fields);
    const parents = entries.map(([, p]) => posix.dirname(p));
    return {
      paths: [root, ...parents],
      what: `resolving the parent directories of ${parents.join(", ")}`,
      check(lines) {
        const realRoot = lines[0] ?? "";
        entries.forEach(([field, path], i) => {
          const written = parents[i]!;
          const resolved = lines[i + 1] ?? "";
          // The kubelet dir itself may be a symlink (some distributions move it): compare below it.
          const expected = written === root ? realRoot : `${realRoot}${written.slice(root.length)}`;
          if (resolved !== expected) {
            throw invalidArgument(
              field,
              `${JSON.stringify(path)} leaves the kubelet directory through a symlink (its parent resolves to ${JSON.stringify(resolved)})`,
            );
          }
        });
      },
    };
  }

  async function confine(fields: Record<string, string>, signal?: AbortSignal): Promise<void> {
    if (Object.keys(fields).length === 0) return;
    const c = confinement(fields);
    const r = await deps.runner("sh", ["-c", `${RESOLVE_SH}\nfor p; do resolve "$p"; done`, "sh", ...c.paths], {
      timeoutMs: deps.timeoutMs,
      signal,
      log: deps.log,
    });
    if (!ok(r)) {
      if (r.timedOut)
        throw unavailable(
          `${c.what} did not finish within ${deps.timeoutMs} ms; the kubelet dir may sit on a hung mount`,
        );
      throw unavailable(`${c.what} failed: ${describeFailure(r)}`);
    }
    c.check(completeStdout(r, "resolving kubelet paths").split("\n"));
  }

  return { lexical, confine, confinement, root };
}
