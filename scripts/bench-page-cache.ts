/**
 * The page-cache state an executable starts from, set on purpose, because the binary pages a
 * process maps depend on it (measured on this host, kernel 6.18, ext4, read_ahead_kb 8192):
 * a file fault maps the cached neighbours of the faulting page (fault-around), and since ext4
 * caches files in large folios, what is mapped follows the folio sizes of the cache, that is how
 * the file came into the cache. The same csi-node build mapped 31.0 MB of its executable when it
 * faulted the file in itself (readahead by the faults: mostly small folios), 32.2 MB when the
 * cache held the file as the build wrote it, and 37.7 MB after the file was read sequentially
 * (`cat`: 9,467 of 9,639 mapped pages in 90 large folios). Within one state the page set was the
 * same in every run to 144 pages; the earlier spread between runs (34.5–39.5 MB) was the state
 * drifting between runs (pages evicted by other work, then read back by the next `cat`).
 * THP is not involved (transparent_hugepage=madvise, FilePmdMapped 0: no PMD mappings of the
 * file) and neither is ASLR (the executable is not position-independent: mapped at 0x200000).
 */
import { execFileSync } from "node:child_process";

/** Bytes of the file now in the page cache (util-linux fincore). */
export function cachedBytes(path: string): number {
  return Number(execFileSync("fincore", ["--bytes", "--noheadings", "--output", "RES", path], { encoding: "utf8" }));
}

/**
 * Drops the file's pages from the page cache (posix_fadvise DONTNEED through dd; pages some process
 * still maps stay), and says what stayed cached.
 */
export function evict(path: string): number {
  execFileSync("dd", [`if=${path}`, "iflag=nocache", "count=0", "status=none"]);
  return cachedBytes(path);
}

/** Evicts the file, then reads it once from start to end: the cache as any sequential reader leaves it. */
export function readIntoCache(path: string): void {
  evict(path);
  execFileSync("cat", [path], { stdio: ["ignore", "ignore", "inherit"] });
}
