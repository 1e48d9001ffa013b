import { aborted } from "./errors.ts";

/**
 * Non-blocking per-key exclusion: a second operation on a key that is busy is refused at once
 * (the CO retries), rather than queued behind an operation that may be stuck.
 */
export interface KeyLock {
  tryAcquire(key: string): (() => void) | null;
  held(key: string): boolean;
  keys(): string[];
}

export function createKeyLock(): KeyLock {
  const busy = new Set<string>();
  return {
    tryAcquire(key) {
      if (busy.has(key)) return null;
      busy.add(key);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        busy.delete(key);
      };
    },
    held: (key) => busy.has(key),
    keys: () => [...busy],
  };
}

/**
 * Runs `fn` holding `key`, or refuses at once with ABORTED (`busy` says what was asked) when another
 * operation holds it: both CSI services serialise per volume this way.
 */
export async function exclusive<T>(locks: KeyLock, key: string, busy: string, fn: () => Promise<T>): Promise<T> {
  const release = locks.tryAcquire(key);
  if (!release) throw aborted(busy);
  try {
    return await fn();
  } finally {
    release();
  }
}
