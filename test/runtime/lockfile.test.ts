import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { isDomainError } from "../../src/runtime/errors.ts";
import { acquireLock, isLockHeld, LockHeldError, readLock } from "../../src/runtime/lockfile.ts";

describe("lock files", () => {
  test("held by a live process: a second taker is refused with who holds it", () => {
    const dir = mkdtempSync("/tmp/rds-csi-lock-");
    const held = acquireLock(`${dir}/csi-node.lock`, { command: "csi-node" });
    expect(readLock(`${dir}/csi-node.lock`)).toMatchObject({ pid: process.pid, command: "csi-node", alive: true });
    expect(() => acquireLock(`${dir}/csi-node.lock`, { command: "gc" })).toThrow(
      new RegExp(`held by pid ${process.pid} \\(csi-node`),
    );
    held.release();
    expect(readLock(`${dir}/csi-node.lock`)).toBeNull();
  });

  test("a stale lock (dead pid) is reported and replaced", async () => {
    const dir = mkdtempSync("/tmp/rds-csi-lock-");
    const child = Bun.spawn(["true"]);
    await child.exited;
    writeFileSync(
      `${dir}/gc.lock`,
      JSON.stringify({ pid: child.pid, startedAt: "2026-01-01T00:00:00Z", command: "gc" }),
    );
    expect(readLock(`${dir}/gc.lock`)?.alive).toBe(false);
    const held = acquireLock(`${dir}/gc.lock`, { command: "gc" });
    expect(held.replacedStale?.pid).toBe(child.pid);
    held.release();
  });

  test("a held lock is a LockHeldError naming the holder, not an RPC code; other failures are not 'held'", () => {
    const dir = mkdtempSync("/tmp/rds-csi-lock-");
    const held = acquireLock(`${dir}/gc.lock`, { command: "gc" });
    let e: unknown;
    try {
      acquireLock(`${dir}/gc.lock`, { command: "gc" });
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(LockHeldError);
    expect(isDomainError(e)).toBe(false);
    expect(isLockHeld(e) && e.holder).toMatchObject({ pid: process.pid, command: "gc", alive: true });
    held.release();
    // A lock path below a file: the directory cannot be made, which says nothing about another process.
    writeFileSync(`${dir}/not-a-dir`, "");
    let other: unknown;
    try {
      acquireLock(`${dir}/not-a-dir/gc.lock`, { command: "gc" });
    } catch (err) {
      other = err;
    }
    expect((other as NodeJS.ErrnoException).code).toBeString();
    expect(isLockHeld(other)).toBe(false);
  });
});
