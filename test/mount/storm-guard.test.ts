import { describe, expect, test } from "bun:test";
import { assertNoStorm, assertTableSane, countMounts } from "../../src/mount/storm-guard.ts";
import type { MountEntry } from "../../src/mount/mountinfo.ts";
import { csiErrorOf } from "../../src/node/outcomes.ts";

const entry = (dev: string, mountPoint: string): MountEntry => ({ dev, mountPoint }) as MountEntry;
const table = (n: number, dev: string, at: (i: number) => string) =>
  Array.from({ length: n }, (_, i) => entry(dev, at(i)));

describe("storm guard", () => {
  test("counts entries by device and by mount point", () => {
    const t = [...table(3, "7:1", (i) => `/a/${i}`), ...table(2, "7:2", () => "/b")];
    expect(countMounts(t, { dev: "7:1", mountPoint: "/b" })).toEqual({ byDev: 3, byTarget: 2 });
  });

  test.each([
    ["99 entries of the device", table(99, "7:1", (i) => `/m/${i}`), "ok"],
    ["100 entries of the device", table(100, "7:1", (i) => `/m/${i}`), "resource-exhausted"],
    ["100 entries stacked at the target", table(100, "8:1", () => "/t"), "resource-exhausted"],
    ["100 entries of other devices elsewhere", table(100, "8:1", (i) => `/m/${i}`), "ok"],
  ])("%s → %s", (_, t, want) => {
    let got = "ok";
    try {
      assertNoStorm(t, { dev: "7:1", target: "/t", source: "/dev/loop1" }, 100);
    } catch (e) {
      // The guard says what it refused; the node's answer to the CO is the code checked here.
      got = (csiErrorOf(e) as { kind: string }).kind;
    }
    expect(got).toBe(want);
  });

  test("a table at the total limit refuses all mount work (UNAVAILABLE) and says what to run", () => {
    expect(() =>
      assertTableSane(
        table(20, "1:1", (i) => `/x/${i}`),
        20,
      ),
    ).toThrow(/rds-csi gc/);
    expect(() =>
      assertTableSane(
        table(19, "1:1", (i) => `/x/${i}`),
        20,
      ),
    ).not.toThrow();
  });
});
