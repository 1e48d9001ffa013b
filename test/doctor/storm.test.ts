import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stormCheck } from "../../src/health/mounts.ts";
import type { Finding, HealthDeps } from "../../src/health/types.ts";
import { readMountinfo } from "../../src/mount/mountinfo.ts";
import { createRunner } from "../../src/runtime/exec.ts";

const runner = createRunner();
const sh = async (cmd: string, args: string[]) => {
  const r = await runner(cmd, args, { timeoutMs: 10_000 });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
};

describe("mount storm with real bind mounts", () => {
  let base: string;
  let src: string;
  const targets: string[] = [];
  let stacked: string;
  let stackedCount = 0;
  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), "storm-"));
    src = join(base, "src");
    mkdirSync(src);
    for (let i = 0; i < 120; i++) {
      const t = join(base, `t${i}`);
      mkdirSync(t);
      await sh("mount", ["--bind", src, t]);
      targets.push(t);
    }
    stacked = join(base, "stacked");
    mkdirSync(stacked);
    for (let i = 0; i < 105; i++) {
      await sh("mount", ["-t", "tmpfs", "-o", "size=64k", "storm", stacked]);
      stackedCount++;
    }
  }, 60_000);
  afterAll(async () => {
    for (const t of targets) await runner("umount", ["-l", t], { timeoutMs: 10_000 });
    for (let i = 0; i < stackedCount; i++) await runner("umount", ["-l", stacked], { timeoutMs: 10_000 });
    rmSync(base, { recursive: true, force: true });
  }, 60_000);

  test("the bind-mounted subtree and the stacked target are above the threshold; the rest of the table is not", async () => {
    const mounts = await readMountinfo({ runner });
    const deps = { stormThreshold: 100 } as HealthDeps;
    const fs: Finding[] = await stormCheck.run(deps, { mounts }, new AbortController().signal);
    const sources = fs.find((f) => f.class === "mount_storm_sources")!;
    expect(sources.severity).toBe("warning");
    const found = (sources.details as { sources: { root: string; count: number }[] }).sources;
    expect(found).toHaveLength(1);
    expect(found[0]!.root.endsWith(`${base.split("/").pop()}/src`)).toBe(true);
    expect(found[0]!.count).toBe(120);
    const tgt = fs.find((f) => f.class === "mount_storm_targets")!;
    expect(tgt.severity).toBe("warning");
    expect((tgt.details as { targets: { target: string; count: number }[] }).targets).toEqual([
      { target: stacked, count: 105 },
    ]);
    expect(fs.find((f) => f.class === "mount_count")!.details).toEqual({ total: mounts.length });
  });

  test("with a threshold above the storm nothing is flagged", async () => {
    const mounts = await readMountinfo({ runner });
    const fs = await stormCheck.run({ stormThreshold: 500 } as HealthDeps, { mounts }, new AbortController().signal);
    expect(fs.find((f) => f.class === "mount_storm_sources")!.severity).toBe("ok");
    expect(fs.find((f) => f.class === "mount_storm_targets")!.severity).toBe("ok");
  });
});
