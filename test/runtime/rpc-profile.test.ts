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
  expect(profileFields(got.a!)).toEqual({ children: 2, mount_table_reads: 1, commands: "true cat" });
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
