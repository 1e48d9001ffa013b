import { open, readdir, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { crashPoint } from "../../runtime/crash-points.ts";

/** Temp file + fsync + rename: a reader sees the old or the new content, never half of it. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(JSON.stringify(value, null, 2) + "\n");
    await fh.sync();
  } finally {
    await fh.close();
  }
  crashPoint("json.temp-written");
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** null when the file does not exist; throws on unreadable or corrupt content. */
export async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

/** Temp files of writes a crash interrupted: never read, removed at start-up. */
export async function removeTempFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const stale = names.filter((n) => /\.json\.tmp-\d+-[a-z0-9]+$/.test(n));
  for (const n of stale) await unlink(join(dir, n)).catch(() => {});
  return stale;
}
