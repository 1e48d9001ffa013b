import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import type { DiskMeta } from "../backend.ts";
import { readJson, writeJsonAtomic } from "../file/atomic-json.ts";
import { withDeadline } from "../../runtime/deadline.ts";

const IO_TIMEOUT_MS = 10_000;

/**
 * Where disk metadata lives when the router's `/disk` rows take no `comment`: one JSON map slot → meta
 * on the controller's state dir, written atomically before the router is changed (a record for a slot
 * that never came to be is harmless and is dropped with the slot's delete).
 */
export interface SlotStore<T> {
  readonly path: string;
  get(slot: string): Promise<T | undefined>;
  set(slot: string, value: T): Promise<void>;
  delete(slot: string): Promise<void>;
}
export type MetaStore = SlotStore<DiskMeta>;

/** A JSON map slot → value in one file, loaded once, rewritten atomically on every change. */
export function createSlotStore<T>(path: string): SlotStore<T> {
  let map: Record<string, T> | undefined;
  // Writes are chained so two RPCs never interleave a read-modify-write of the file.
  let queue: Promise<unknown> = Promise.resolve();
  // The state dir is local disk, but a write that hangs must not hold every later RPC in the queue.
  const load = async () =>
    (map ??= (await withDeadline(`reading ${path}`, IO_TIMEOUT_MS, () => readJson<Record<string, T>>(path))) ?? {});
  const persist = () =>
    withDeadline(`writing ${path}`, IO_TIMEOUT_MS, async () => {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      await writeJsonAtomic(path, map);
    });
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
    set: (slot, value) =>
      serial(async () => {
        (await load())[slot] = value;
        await persist();
      }),
    delete: (slot) =>
      serial(async () => {
        const m = await load();
        if (!(slot in m)) return;
        delete m[slot];
        await persist();
      }),
  };
}
