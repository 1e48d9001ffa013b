import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { DiskMeta } from "../backend.ts";
import { readJson, writeJsonAtomic } from "../file/atomic-json.ts";

/**
 * Where disk metadata lives when the router's `/disk` rows take no `comment`: one JSON map slot → meta
 * on the controller's state dir, written atomically before the router is changed (a record for a slot
 * that never came to be is harmless and is dropped with the slot's delete).
 */
export interface MetaStore {
  readonly path: string;
  get(slot: string): Promise<DiskMeta | undefined>;
  set(slot: string, meta: DiskMeta): Promise<void>;
  delete(slot: string): Promise<void>;
}

export function createMetaStore(path: string): MetaStore {
  let map: Record<string, DiskMeta> | undefined;
  // Writes are chained so two RPCs never interleave a read-modify-write of the file.
  let queue: Promise<unknown> = Promise.resolve();
  const load = async () => (map ??= (await readJson<Record<string, DiskMeta>>(path)) ?? {});
  const persist = async () => {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeJsonAtomic(path, map);
  };
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn, fn);
    queue = p.catch(() => {});
    return p;
  };
  return {
    path,
    async get(slot) {
      return (await load())[slot];
    },
    set: (slot, meta) => serial(async () => {
      (await load())[slot] = meta;
      await persist();
    }),
    delete: (slot) => serial(async () => {
      const m = await load();
      if (!(slot in m)) return;
      delete m[slot];
      await persist();
    }),
  };
}
