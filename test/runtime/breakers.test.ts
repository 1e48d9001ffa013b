import { describe, expect, test } from "bun:test";
import { createBreakerRegistry } from "../../src/runtime/breakers.ts";
import { createMetrics, syncBreakerGauges } from "../../src/runtime/metrics.ts";
import { recordBreakerState } from "../../src/runtime/metric-sink.ts";
import { DomainError, invalidArgument } from "../../src/runtime/errors.ts";

const fail = async () => {
  throw new Error("mkfs failed");
};

describe("breaker registry", () => {
  test("opens after the threshold of consecutive failures and fails fast as unavailable naming the key", async () => {
    const changes: string[] = [];
    const reg = createBreakerRegistry({
      threshold: 3,
      initialOpenMs: 60_000,
      onStateChange: (k, s) => changes.push(`${k}=${s}`),
    });
    for (let i = 0; i < 3; i++) await expect(reg.execute("volume:a", fail)).rejects.toThrow("mkfs failed");
    let calls = 0;
    const err = await reg
      .execute("volume:a", async () => {
        calls++;
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(DomainError);
    expect(err.kind).toBe("unavailable");
    expect(err.message).toContain("volume:a");
    expect(err.message).toContain("rds-csi breaker reset volume:a");
    expect(calls).toBe(0);
    expect(reg.isOpen("volume:a")).toBe(true);
    expect(changes).toContain("volume:a=open");
    // Other keys are independent.
    await expect(reg.execute("volume:b", async () => 7)).resolves.toBe(7);
  });

  test("a success resets the consecutive count", async () => {
    const reg = createBreakerRegistry({ threshold: 3 });
    await reg.execute("k", fail).catch(() => {});
    await reg.execute("k", fail).catch(() => {});
    await reg.execute("k", async () => 1);
    await reg.execute("k", fail).catch(() => {});
    await reg.execute("k", fail).catch(() => {});
    expect(reg.isOpen("k")).toBe(false);
    expect(reg.get("k")?.failures).toBe(2);
  });

  test("caller mistakes do not count as failures", async () => {
    const reg = createBreakerRegistry({ threshold: 2 });
    for (let i = 0; i < 5; i++)
      await reg
        .execute("k", async () => {
          throw invalidArgument("volume_id", "missing");
        })
        .catch(() => {});
    expect(reg.isOpen("k")).toBe(false);
  });

  test("half-opens after the open period, and the period doubles on re-open up to the maximum", async () => {
    const reg = createBreakerRegistry({ threshold: 1, initialOpenMs: 80, maxOpenMs: 200 });
    await reg.execute("k", fail).catch(() => {});
    const first = reg.get("k")!;
    expect(first.state).toBe("open");
    await Bun.sleep(100);
    // Trial call fails: opens again, now for 160 ms.
    await reg.execute("k", fail).catch(() => {});
    const second = reg.get("k")!;
    expect(second.opens).toBe(2);
    expect(second.openUntil! - Date.now()).toBeGreaterThan(100);
    await Bun.sleep(180);
    await reg.execute("k", fail).catch(() => {});
    const third = reg.get("k")!;
    expect(third.openUntil! - Date.now()).toBeLessThanOrEqual(200);
    await Bun.sleep(220);
    await expect(reg.execute("k", async () => "ok")).resolves.toBe("ok");
    expect(reg.get("k")!.state).toBe("closed");
  });

  test("reset closes an open breaker at once and lists it no more", async () => {
    const reg = createBreakerRegistry({ threshold: 1 });
    await reg.execute("volume:x", fail).catch(() => {});
    expect(reg.list().map((b) => [b.key, b.state])).toEqual([["volume:x", "open"]]);
    expect(reg.reset("volume:x")).toBe(true);
    expect(reg.reset("volume:unknown")).toBe(false);
    await expect(reg.execute("volume:x", async () => 1)).resolves.toBe(1);
  });
});

describe("breaker state is the real state (issue 11)", () => {
  test("after the open period, list/get say half-open (the next call is the trial), never open with a past openUntil", async () => {
    const reg = createBreakerRegistry({ threshold: 1, initialOpenMs: 80 });
    await reg.execute("backend:x", fail).catch(() => {});
    const open = reg.get("backend:x")!;
    expect(open.state).toBe("open");
    expect(open.openUntil! > Date.now()).toBe(true);
    expect(reg.isOpen("backend:x")).toBe(true);
    await Bun.sleep(120);
    // No call in between: cockatiel has not moved yet, but a call would now go through as the trial.
    for (const b of [reg.get("backend:x")!, ...reg.list()]) {
      expect(b.state).toBe("half-open");
      expect(b.openUntil).toBeUndefined();
    }
    expect(reg.isOpen("backend:x")).toBe(false);
    await expect(reg.execute("backend:x", async () => "trial")).resolves.toBe("trial");
    expect(reg.get("backend:x")).toMatchObject({ state: "closed", failures: 0, opens: 0 });
  });

  test("metrics at scrape time show the real state too: open, then half-open once the period is over", async () => {
    const metrics = createMetrics();
    const reg = createBreakerRegistry({
      threshold: 1,
      initialOpenMs: 80,
      onStateChange: (k, s) => recordBreakerState(metrics, k, s),
    });
    await reg.execute("backend:m", fail).catch(() => {});
    const gauge = async () =>
      (await metrics.registry.getSingleMetric("rds_csi_breaker_state")!.get()).values.find(
        (v) => v.labels.key === "backend:m",
      )?.value;
    syncBreakerGauges(metrics, reg);
    expect(await gauge()).toBe(2);
    await Bun.sleep(120);
    syncBreakerGauges(metrics, reg);
    expect(await gauge()).toBe(1);
  });

  test("a kind of call that keeps failing opens the breaker although another kind keeps succeeding", async () => {
    const reg = createBreakerRegistry({ threshold: 3 });
    for (let i = 0; i < 3; i++) {
      await reg.execute("backend:x", async () => "resource answers", "GET system/resource");
      await reg.execute("backend:x", fail, "GET disk").catch(() => {});
    }
    expect(reg.get("backend:x")).toMatchObject({ state: "open", failures: 3 });
  });

  test("without kinds, a success still resets the count (the node's volume breakers)", async () => {
    const reg = createBreakerRegistry({ threshold: 2 });
    await reg.execute("volume:v", fail).catch(() => {});
    await reg.execute("volume:v", async () => 1);
    await reg.execute("volume:v", fail).catch(() => {});
    expect(reg.get("volume:v")).toMatchObject({ state: "closed", failures: 1 });
  });
});
