/**
 * Runs work for one key strictly one after another (others wait their turn). Used for CreateVolume
 * by name: the second of two concurrent creates must see the first one's disk, not race it.
 */
export interface Serializer {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
  pending(key: string): boolean;
}

export function createSerializer(): Serializer {
  const tails = new Map<string, Promise<unknown>>();
  return {
    run<T>(key: string, fn: () => Promise<T>): Promise<T> {
      const prev = tails.get(key) ?? Promise.resolve();
      const next = prev.then(fn, fn);
      const tail = next.catch(() => undefined);
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return next;
    },
    pending: (key) => tails.has(key),
  };
}
