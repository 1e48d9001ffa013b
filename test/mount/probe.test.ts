import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createProbeRegistry, type ProbeRegistry } from "../../src/mount/probe.ts";
import { createFrozenFuse, processesMentioning, type FrozenFuse } from "../helpers/frozen-fuse.ts";

describe("probe registry on healthy paths", () => {
  const reg = createProbeRegistry({ timeoutMs: 5000, concurrency: 8 });
  afterAll(() => reg.close());

  test("a live filesystem answers ok with consistent statfs figures", async () => {
    const r = await reg.probe("/tmp");
    expect(r.state).toBe("ok");
    if (r.state !== "ok") return;
    const s = r.stats!;
    expect(s.bytesTotal).toBeGreaterThan(0);
    expect(s.bytesUsed + s.bytesAvailable).toBeLessThanOrEqual(s.bytesTotal);
    expect(s.inodesUsed).toBe(s.inodesTotal - s.inodesFree);
  });

  test("a missing path is an error marked missing, naming the path", async () => {
    const r = await reg.probe("/nonexistent/rds-csi-probe");
    expect(r).toMatchObject({ state: "error", missing: true });
    if (r.state === "error") expect(r.reason).toContain("/nonexistent/rds-csi-probe");
  });

  test("paths with spaces and leading dashes are passed as arguments, not options", async () => {
    const dir = mkdtempSync(join(tmpdir(), "probe -x "));
    try {
      expect((await reg.probe(dir)).state).toBe("ok");
      expect((await reg.probe("-f")).state).toBe("error");
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test("many paths in one tick are batched under the concurrency cap, each answered in order", async () => {
    const before = reg.children().started;
    const paths = Array.from({ length: 600 }, (_, i) =>
      i % 3 === 0 ? `/nonexistent/p${i}` : i % 3 === 1 ? "/tmp" : "/proc",
    );
    const rs = await Promise.all(paths.map((p) => reg.probe(p)));
    rs.forEach((r, i) => expect(r.state).toBe(i % 3 === 0 ? "error" : "ok"));
    // "/tmp" and "/proc" join the one in-flight probe of the same path; the 200 missing paths are batched.
    expect(reg.children().started - before).toBeLessThan(100);
    expect(reg.children().peak).toBeLessThanOrEqual(8 * 4);
    expect(reg.outstanding()).toEqual([]);
  });
});

describe("probe registry with a frozen FUSE mount", () => {
  let fuse: FrozenFuse;
  let reg: ProbeRegistry;
  let healthy: string;
  beforeAll(async () => {
    fuse = await createFrozenFuse();
    healthy = mkdtempSync(join(tmpdir(), "probe-ok-"));
    reg = createProbeRegistry({ timeoutMs: 1500, concurrency: 4, abandonAfterMs: 60_000 });
  });
  afterAll(async () => {
    reg?.close();
    await fuse?.cleanup();
    rmSync(healthy, { recursive: true, force: true });
  });

  test("answers ok before freezing", async () => {
    expect((await reg.probe(fuse.mountPoint)).state).toBe("ok");
  });

  test("reported dead within the deadline + 1 s while other paths in the same round are fine", async () => {
    fuse.freeze();
    const started = performance.now();
    const round = [healthy, fuse.mountPoint, "/tmp", "/proc", "/sys"];
    const rs = await Promise.all(
      round.map(async (p) => ({ p, r: await reg.probe(p), ms: performance.now() - started })),
    );
    const dead = rs.find((x) => x.p === fuse.mountPoint)!;
    expect(dead.r.state).toBe("dead");
    expect(dead.ms).toBeLessThan(1500 + 1000);
    for (const x of rs.filter((x) => x.p !== fuse.mountPoint)) expect(x.r.state).toBe("ok");
    expect(reg.outstanding()).toEqual([fuse.mountPoint]);
  });

  test("the next round answers dead at once without a second child", async () => {
    const startedBefore = reg.children().started;
    const probesOnMount = processesMentioning(fuse.mountPoint).filter((p) => p !== fuse.pid);
    expect(probesOnMount.length).toBe(1);
    const r = await reg.probe(fuse.mountPoint);
    expect(r.state).toBe("dead");
    if (r.state === "dead") expect(r.reason).toContain("still stuck");
    expect(reg.children().started).toBe(startedBefore);
    expect(processesMentioning(fuse.mountPoint).filter((p) => p !== fuse.pid)).toEqual(probesOnMount);
  });

  test("after thawing, the stuck child answers, is reaped, and the mount probes ok again", async () => {
    fuse.thaw();
    for (let i = 0; i < 100 && reg.outstanding().length > 0; i++) await Bun.sleep(50);
    expect(reg.outstanding()).toEqual([]);
    expect((await reg.probe(fuse.mountPoint)).state).toBe("ok");
  });
});
