import { lstatSync, mkdirSync, statSync } from "node:fs";

/**
 * The state dir holds staging records, locks and the admin socket, all written by root. If another
 * user can write to it they can plant a `volumes` symlink that root then writes its records through,
 * or swap the admin socket. Created private; an existing one must be ours and writable only by us.
 */
export function stateDirProblem(dir: string): string | null {
  try {
    // Explicit mode: under umask 000 a default mkdir would make it world-writable.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    if (!st.isDirectory()) return "is not a directory";
    const uid = process.getuid?.() ?? 0;
    if (st.uid !== uid) return `belongs to uid ${st.uid}, not to this process (uid ${uid})`;
    const mode = st.mode & 0o7777;
    if (mode & 0o022) return `is writable by other users (mode ${mode.toString(8).padStart(4, "0")}); make it 0700`;
    for (const sub of ["volumes"]) {
      try {
        if (!lstatSync(`${dir}/${sub}`).isDirectory()) return `has ${sub} that is not a plain directory (a symlink?)`;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    }
    return null;
  } catch (e) {
    return `cannot be prepared: ${(e as Error).message}`;
  }
}
