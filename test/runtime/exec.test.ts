import { describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { createRunner, describeFailure, killGroup } from "../../src/runtime/exec.ts";
import { captureLogger } from "../helpers/log-capture.ts";

import { readFileSync } from "node:fs";

/** Alive means running or sleeping: a killed process may linger as a zombie until someone reaps it. */
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
};

describe("command runner", () => {
  test("returns exit code and output without throwing", async () => {
    const run = createRunner();
    const r = await run("sh", ["-c", "echo out; echo err >&2; exit 3"], { timeoutMs: 5000 });
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toBe("out\n");
    expect(r.stderr).toBe("err\n");
    expect(r.timedOut).toBe(false);
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  test("kills the whole process group at the deadline: the grandchild does not survive", async () => {
    const run = createRunner();
    const dir = `/tmp/exec-test-${process.pid}-${Date.now()}`;
    // The grandchild writes its pid, then both sleep far past the deadline.
    const r = await run("sh", ["-c", `mkdir -p ${dir}; sh -c 'echo $$ > ${dir}/gc.pid; sleep 100' & sleep 100`], {
      timeoutMs: 400,
    });
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe("SIGKILL");
    expect(r.durationMs).toBeLessThan(5000);
    const grandchild = Number(await Bun.file(`${dir}/gc.pid`).text());
    expect(grandchild).toBeGreaterThan(0);
    await Bun.sleep(100);
    expect(alive(grandchild)).toBe(false);
  });

  test("an AbortSignal kills the child", async () => {
    const run = createRunner();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const r = await run("sleep", ["30"], { timeoutMs: 30_000, signal: ac.signal });
    expect(r.aborted).toBe(true);
    expect(r.exitCode).toBeNull();
  });

  test("bounds captured output", async () => {
    const run = createRunner();
    const r = await run("sh", ["-c", "head -c 200000 /dev/zero | tr '\\0' x"], {
      timeoutMs: 5000,
      maxOutputBytes: 1000,
    });
    expect(r.stdout.length).toBe(1000);
    expect(r.truncated).toBe(true);
  });

  test("a program that does not exist is a result, not an exception", async () => {
    const r = await createRunner()("/nonexistent/tool", ["x"], { timeoutMs: 1000 });
    expect(r.spawnError).toBe("ENOENT");
    expect(describeFailure(r)).toContain("could not start");
  });

  test("logs before and after with duration and exit code, secrets redacted from the command line", async () => {
    const cap = captureLogger();
    const run = createRunner({ log: cap.log });
    await run("echo", ["connect", "--dhchap-secret", "DHHC-1:00:c2VjcmV0c2VjcmV0c2VjcmV0Cg==:", "password=hunter2"], {
      timeoutMs: 2000,
    });
    const lines = cap.lines();
    expect(lines.map((l) => l.msg)).toEqual(["exec start", "exec end"]);
    expect(lines[1]).toMatchObject({ command: "echo", exit_code: 0, timed_out: false });
    expect(typeof lines[1]!.duration_ms).toBe("number");
    expect(cap.text()).not.toContain("hunter2");
    expect(cap.text()).not.toContain("c2VjcmV0");
  });

  test("multi-byte characters survive chunking; the bound counts bytes", async () => {
    const run = createRunner();
    const r = await run("sh", ["-c", "i=0; while [ $i -lt 5000 ]; do printf 'é€'; i=$((i+1)); done"], {
      timeoutMs: 5000,
    });
    expect(r.stdout).toBe("é€".repeat(5000));
    const bounded = await run("printf", ["ééé"], { timeoutMs: 5000, maxOutputBytes: 4 });
    expect(Buffer.byteLength(bounded.stdout)).toBe(4);
    expect(bounded.truncated).toBe(true);
  });

  test("input is passed on stdin", async () => {
    const r = await createRunner()("cat", [], { timeoutMs: 2000, input: "hello" });
    expect(r.stdout).toBe("hello");
  });
});

describe("a cut output is never parsed", () => {
  test("completeStdout refuses a result the runner truncated, and passes a whole one", async () => {
    const { completeStdout, TruncatedOutputError } = await import("../../src/runtime/exec.ts");
    const run = createRunner();
    const cut = await run("head", ["-c", "100000", "/dev/zero"], { timeoutMs: 5_000, maxOutputBytes: 1_000 });
    expect(cut.truncated).toBe(true);
    expect(() => completeStdout(cut, "the listing")).toThrow(TruncatedOutputError);
    const whole = await run("echo", ["hi"], { timeoutMs: 5_000 });
    expect(completeStdout(whole, "the listing")).toBe("hi\n");
  });

  test("gc's loop device list refuses a losetup listing longer than it keeps (UNAVAILABLE, not a partial list)", async () => {
    const { listLoopDevices } = await import("../../src/gc/loop-devices.ts");
    const { mkdtempSync, writeFileSync, chmodSync } = await import("node:fs");
    const dir = mkdtempSync("/tmp/rds-cut-");
    // A stand-in losetup printing 17 MiB of valid-looking JSON rows.
    writeFileSync(
      `${dir}/losetup`,
      `#!/bin/sh\nprintf '{"loopdevices":['\nyes '{"name":"/dev/loop9","maj:min":"7:9","back-file":"/x"},' | head -c 17825792\nprintf '{"name":"/dev/loop8","maj:min":"7:8","back-file":"/y"}]}'\n`,
    );
    chmodSync(`${dir}/losetup`, 0o755);
    const e = await listLoopDevices(createRunner(), { timeoutMs: 20_000, losetupBin: `${dir}/losetup` }).catch(
      (x) => x,
    );
    expect(e.kind).toBe("unavailable");
    expect(e.message).toContain("cut");
  });
});

describe("killGroup", () => {
  test("kills a detached child and its grandchild; a second kill of the exited child is no error", async () => {
    const child = spawn("sh", ["-c", "sleep 100 & echo $!; wait"], {
      detached: true,
      stdio: ["ignore", "pipe", "ignore"],
    });
    const grandchild = Number(
      await new Promise<string>((resolve) => child.stdout!.once("data", (c) => resolve(String(c)))),
    );
    expect(alive(grandchild)).toBe(true);
    const exited = new Promise((resolve) => child.once("exit", resolve));
    killGroup(child);
    expect(await exited).toBeNull(); // exit code null: killed by a signal
    await Bun.sleep(100);
    expect(alive(grandchild)).toBe(false);
    expect(() => killGroup(child)).not.toThrow();
  });

  test("a child that never started (no pid) is left alone", async () => {
    const child = spawn("/nonexistent/rds-csi-no-such-program", [], { detached: true, stdio: "ignore" });
    child.on("error", () => {});
    expect(child.pid).toBeUndefined();
    expect(() => killGroup(child)).not.toThrow();
  });
});
