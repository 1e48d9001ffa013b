import { readdir, readFile } from "node:fs/promises";

/**
 * Readers for kernel attribute files (sysfs, procfs). An attribute that is absent or unreadable is
 * `undefined` and a directory that is absent is empty: a device can vanish between listing and
 * reading, and a scan must go on past it. These readers carry no deadline of their own: a wedged
 * driver can stall any one read, so the caller puts the whole scan under one (withDeadline).
 */

/** A small attribute's text without its trailing newline, or undefined when it cannot be read. */
export async function readAttribute(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch {
    return undefined;
  }
}

/** A directory's entry names, or none when it cannot be read. */
export async function listEntries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}
