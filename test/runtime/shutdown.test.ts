import { describe, expect, test } from "bun:test";
import { createShutdownCoordinator } from "../../src/runtime/shutdown.ts";
import { captureLogger } from "../helpers/log-capture.ts";

describe("shutdown coordinator", () => {
  test("waits for in-flight work, refuses new work while draining, runs closers newest first, exits 0", async () => {
    const cap = captureLogger();
    const sd = createShutdownCoordinator({ graceMs: 5000, log: cap.log });
    const order: string[] = [];
    sd.onClose(() => void order.push("first-registered"));
    sd.onClose(() => void order.push("last-registered"));
    let finished = false;
    const slow = sd.track("NodeStageVolume", "vol-1", async () => {
      await Bun.sleep(200);
      finished = true;
      return "done";
    });
    expect(sd.inFlight().map((o) => o.key)).toEqual(["vol-1"]);
    const code = sd.shutdown("SIGTERM");
    expect(sd.draining).toBe(true);
    expect(sd.signal.aborted).toBe(true);
    await expect(sd.track("NodePublishVolume", "vol-2", async () => 1)).rejects.toMatchObject({ kind: "unavailable" });
    expect(await slow).toBe("done");
    expect(await code).toBe(0);
    expect(finished).toBe(true);
    expect(order).toEqual(["last-registered", "first-registered"]);
  });

  test("past the grace: names what is still running with its age and returns 1", async () => {
    const cap = captureLogger();
    const sd = createShutdownCoordinator({ graceMs: 100, log: cap.log });
    void sd.track("NodeStageVolume", "vol-stuck", () => new Promise(() => {}));
    expect(await sd.shutdown("SIGTERM")).toBe(1);
    const left = cap.lines().find((l) => l.msg.includes("still running"));
    expect(left).toMatchObject({ op: "NodeStageVolume", key: "vol-stuck" });
    expect(left!.age_ms).toBeGreaterThanOrEqual(100);
  });

  test("a closer that hangs does not hold the exit", async () => {
    const sd = createShutdownCoordinator({ graceMs: 100, log: captureLogger().log, closeTimeoutMs: 100 });
    sd.onClose(() => new Promise(() => {}));
    const t = performance.now();
    expect(await sd.shutdown("test")).toBe(0);
    expect(performance.now() - t).toBeLessThan(2000);
  });
});
