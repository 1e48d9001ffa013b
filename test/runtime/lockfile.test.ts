import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { acquireLock, readLock } from "../../src/runtime/lockfile.ts";

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
});
