import { afterAll, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkFilesystem } from "../../src/fs/health-check.ts";
import { probeFilesystem } from "../../src/fs/probe-filesystem.ts";
import { createRunner, type Runner } from "../../src/runtime/exec.ts";

const dir = mkdtempSync(join(tmpdir(), "rds-fs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const runner = createRunner();
const img = (name: string, size = "16M") => {
  const f = join(dir, name);
  execFileSync("truncate", ["-s", size, f]);
  return f;
};

test("blank image is 'none'; ext4 and xfs are recognised", async () => {
  expect(await probeFilesystem(img("blank"), { runner })).toEqual({ state: "none" });
  const e = img("e");
  execFileSync("mkfs.ext4", ["-q", "-F", e]);
  // BLOCK_SIZE as blkid reports it: ext4's block size (1 KiB on a 16 MiB filesystem), xfs's sector size.
  expect(await probeFilesystem(e, { runner })).toEqual({ state: "filesystem", type: "ext4", blockSize: 1024 });
  const x = img("x", "320M");
  execFileSync("mkfs.xfs", ["-q", "-f", x]);
  expect(await probeFilesystem(x, { runner })).toEqual({ state: "filesystem", type: "xfs", blockSize: 512 });
  // The clean check's block count is the superblock's, as dumpe2fs reads it: the stage path's grow check relies on it.
  const dumped = Number(
    /^Block count:\s+(\d+)/m.exec(
      execFileSync("dumpe2fs", ["-h", e], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }),
    )![1],
  );
  expect(dumped).toBe(16384);
  expect(await checkFilesystem(e, "ext4", { runner, timeoutMs: 30_000 })).toEqual({ healthy: true, blocks: dumped });
  expect(await checkFilesystem(x, "xfs", { runner, timeoutMs: 30_000 })).toEqual({ healthy: true });
});

test("a device that cannot be read is 'unknown', never 'none' (blkid exit 2 is not enough on its own)", async () => {
  const r = await probeFilesystem(join(dir, "missing-device"), { runner, attempts: 2, retryDelayMs: 10 });
  expect(r.state).toBe("unknown");
});

test("blkid that cannot answer is retried a bounded number of times, then 'unknown'", async () => {
  let calls = 0;
  // blkid exits 1 ("could not tell"), as right after a connect when the device is not ready.
  const flaky: Runner = (cmd, args, o) => {
    if (cmd === "blkid") calls++;
    return runner("sh", ["-c", "exit 1"], o);
  };
  const r = await probeFilesystem(img("never"), { runner: flaky, attempts: 3, retryDelayMs: 10 });
  expect(r.state).toBe("unknown");
  expect(calls).toBe(3);
});
