/**
 * The page-cache state an executable starts from, set on purpose, because the binary pages a
 * process maps depend on it (measured on this host, kernel 6.18, ext4, read_ahead_kb 8192):
 * a file fault maps the cached neighbours of the faulting page (fault-around), and since ext4
 * caches files in large folios, what is mapped follows the folio sizes of the cache, that is how
 * the file came into the cache (pages per mapping from /proc/<pid>/pagemap, folios from
 * /proc/kpageflags). The same csi-node build mapped 31.0 MB of its executable when it faulted the
 * file in itself (its faults' readahead: mostly small folios), 32.2 MB when the cache held the file
 * as the build wrote it, and 37.7 MB after the file was read sequentially (`cat`: 9,467 of 9,639
 * mapped pages in 90 large folios). With written or self-faulted pages the set was the same in
 * every run to 144 pages; after a sequential read the folio sizes readahead gets vary with how
 * fragmented free memory is, and so does what is mapped (idle RSS 47.1–48.6 MB over three starts
 * of one build, 45.9–51.1 MB over twelve starts of four builds a few kB apart). The earlier spread (34.5–39.5 MB) was that: the file drifting between states as other
 * work evicted parts of it and the next `cat` read them back in large folios.
 * THP is not involved (transparent_hugepage=madvise, FilePmdMapped 0: no PMD mappings of the
 * file) and neither is ASLR (the executable is not position-independent: mapped at 0x200000).
 */
import { execFileSync } from "node:child_process";
import { closeSync, fsyncSync, openSync, readSync, rmSync, writeSync } from "node:fs";

/** Bytes of the file now in the page cache (util-linux fincore). */
export function cachedBytes(path: string): number {
  return Number(execFileSync("fincore", ["--bytes", "--noheadings", "--output", "RES", path], { encoding: "utf8" }));
}

/**
 * Drops the file's pages from the page cache (posix_fadvise DONTNEED through dd), and says what
 * stayed cached. Dirty pages cannot be dropped: a freshly written file is synced first. Pages some
 * process still maps stay too.
 */
export function evict(path: string): number {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  execFileSync("dd", [`if=${path}`, "iflag=nocache", "count=0", "status=none"]);
  return cachedBytes(path);
}

/** Evicts the file, then reads it once from start to end: the cache as any sequential reader leaves it. */
export function readIntoCache(path: string): void {
  evict(path);
  execFileSync("cat", [path], { stdio: ["ignore", "ignore", "inherit"] });
}

/**
 * Writes a fresh copy of the file in 32 KiB writes and syncs it: the cache as an image pull leaves
 * an executable (containerd unpacks a layer through Go's io.Copy, 32 KiB at a time). Returns dst.
 */
export function writeCopy(path: string, dst: string): string {
  rmSync(dst, { force: true });
  const from = openSync(path, "r");
  const to = openSync(dst, "w", 0o755);
  try {
    const buf = Buffer.alloc(32 * 1024);
    for (let n; (n = readSync(from, buf, 0, buf.length, null)) > 0;) writeSync(to, buf, 0, n);
    fsyncSync(to);
  } finally {
    closeSync(from);
    closeSync(to);
  }
  return dst;
}
