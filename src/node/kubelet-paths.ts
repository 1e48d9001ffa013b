import { posix } from "node:path";
import { completeStdout, describeFailure, ok, type Runner } from "../runtime/exec.ts";
import { invalidArgument, unavailable } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";

/**
 * Node RPCs act only inside the kubelet directory. A path from the CO is first checked on its own
 * (absolute, no `.`/`..`, no empty or over-long components, strictly below the kubelet dir), then
 * its parent is resolved by `realpath` in a child process: a symlink anywhere above the final
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
  /** Refuses paths whose parent directories leave the kubelet dir through a symlink. */
  confine(fields: Record<string, string>, signal?: AbortSignal): Promise<void>;
  readonly root: string;
}

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

  async function confine(fields: Record<string, string>, signal?: AbortSignal): Promise<void> {
    const entries = Object.entries(fields);
    if (entries.length === 0) return;
    // One child for the kubelet dir and every parent: `-m` accepts components that do not exist yet.
    const parents = entries.map(([, p]) => posix.dirname(p));
    const r = await deps.runner("realpath", ["-m", "--", root, ...parents], {
      timeoutMs: deps.timeoutMs,
      signal,
      log: deps.log,
    });
    if (!ok(r)) {
      if (r.timedOut)
        throw unavailable(
          `resolving the parent directories of ${parents.join(", ")} did not finish within ${deps.timeoutMs} ms; the kubelet dir may sit on a hung mount`,
        );
      throw unavailable(`resolving the parent directories of ${parents.join(", ")} failed: ${describeFailure(r)}`);
    }
    const lines = completeStdout(r, "resolving kubelet paths").split("\n");
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
  }

  return { lexical, confine, root };
}
