import { aborted } from "../runtime/errors.ts";

/**
 * Opaque page tokens: the id the next page starts after, so pages stay stable while volumes come
 * and go (an offset would skip or repeat entries after a delete).
 */
const PREFIX = "after:";

export function paginate<T>(
  items: readonly T[],
  idOf: (t: T) => string,
  maxEntries: number,
  startingToken: string,
): { page: T[]; next: string } {
  const sorted = [...items].sort((a, b) => idOf(a).localeCompare(idOf(b)));
  let start = 0;
  if (startingToken) {
    let after: string;
    try {
      after = Buffer.from(startingToken, "base64url").toString("utf8");
    } catch {
      after = "";
    }
    if (!after.startsWith(PREFIX))
      throw aborted(`starting_token ${JSON.stringify(startingToken.slice(0, 64))} is not a token this driver issued`);
    const key = after.slice(PREFIX.length);
    start = sorted.findIndex((t) => idOf(t) > key);
    if (start < 0) start = sorted.length;
  }
  const limit = maxEntries > 0 ? maxEntries : sorted.length;
  const page = sorted.slice(start, start + limit);
  const more = start + limit < sorted.length;
  const next = more && page.length ? Buffer.from(PREFIX + idOf(page[page.length - 1]!)).toString("base64url") : "";
  return { page, next };
}
