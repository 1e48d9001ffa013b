import { expect, test } from "bun:test";
import { readMountinfo } from "../../src/mount/mountinfo.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { profiled, profileFields, profilingRunner, type RpcProfile } from "../../src/runtime/rpc-profile.ts";

test("children and mount-table reads are counted into the profile of the RPC they ran for, concurrent RPCs apart", async () => {
  const base = createRunner();
  const runner = profilingRunner(base);
  expect(runner.stuck()).toBe(0); // the runner's own extras survive the wrapping
  const got: Record<string, RpcProfile> = {};
  const a = profiled(
    async () => {
      await runner("true", [], { timeoutMs: 5_000 });
      await Bun.sleep(20);
      await readMountinfo({ runner, timeoutMs: 5_000 });
    },
    (p) => {
      got.a = p;
    },
  );
  const b = profiled(
    async () => {
      await runner("sh", ["-c", "exit 3"], { timeoutMs: 5_000 });
    },
    (p) => {
      got.b = p;
    },
  );
  await Promise.all([a, b]);
  // Outside any RPC: runs, counted nowhere.
  await runner("true", [], { timeoutMs: 5_000 });
  expect(got.a!.children.map((c) => c.command)).toEqual(["true", "cat"]);
  expect(got.a!.mountTableReads).toBe(1);
  expect(got.b!.children.map((c) => c.command)).toEqual(["sh"]);
  expect(got.b!.mountTableReads).toBe(0);
  const fields = profileFields(got.a!);
  expect(fields).toMatchObject({ children: 2, mount_table_reads: 1, commands: "true cat" });
  // The 20 ms sleep between the children is the RPC's own time, not theirs.
  expect(fields.duration_ms).toBeGreaterThanOrEqual(20);
  expect(fields.children_ms).toBeGreaterThan(0);
  expect(fields.own_ms).toBeGreaterThanOrEqual(19);
  expect(fields.children_ms + fields.own_ms).toBeCloseTo(fields.duration_ms, 1);
});

test("overlapping children count once in the child time", async () => {
  const runner = profilingRunner(createRunner());
  let seen: RpcProfile | undefined;
  await profiled(
    async () => {
      await Promise.all([
        runner("sleep", ["0.2"], { timeoutMs: 5_000 }),
        runner("sleep", ["0.2"], { timeoutMs: 5_000 }),
      ]);
    },
    (p) => {
      seen = p;
    },
  );
  const [a, b] = seen!.children.map((c) => c.ms);
  // Two 200 ms children side by side: the sum of their times is ~400 ms, the time spent waiting on them ~200 ms.
  expect(seen!.childMs).toBeLessThan(a! + b! - 100);
  expect(seen!.childMs).toBeGreaterThanOrEqual(Math.max(a!, b!));
  expect(seen!.childMs).toBeLessThanOrEqual(seen!.wallMs);
});

test("a failing RPC still hands over its profile", async () => {
  const runner = profilingRunner(createRunner());
  let seen: RpcProfile | undefined;
  const e = await profiled(
    async () => {
      await runner("true", [], { timeoutMs: 5_000 });
      throw new Error("boom");
    },
    (p) => {
      seen = p;
    },
  ).catch((x) => x);
  expect((e as Error).message).toBe("boom");
  expect(seen?.children.length).toBe(1);
});
