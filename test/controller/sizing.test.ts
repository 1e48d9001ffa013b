import { describe, expect, test } from "bun:test";
import { GiB, MAX_VOLUME_BYTES, sizeFits, sizeForRange } from "../../src/controller/sizing.ts";

const kindOf = (fn: () => unknown) => {
  try {
    return fn();
  } catch (e) {
    return (e as { kind: string }).kind;
  }
};

describe("sizeForRange: whole GiB, 1 GiB to 16 TiB, always inside the range", () => {
  const rows: [string, { required_bytes?: number; limit_bytes?: number } | undefined, number, number | string][] = [
    ["no range → the minimum", undefined, 0, GiB],
    ["zero required → the minimum", { required_bytes: 0 }, 0, GiB],
    ["1 byte rounds up to 1 GiB", { required_bytes: 1 }, 0, GiB],
    ["exactly 2 GiB stays", { required_bytes: 2 * GiB }, 0, 2 * GiB],
    ["2 GiB + 1 rounds up", { required_bytes: 2 * GiB + 1 }, 0, 3 * GiB],
    ["required == limit on a GiB multiple", { required_bytes: 5 * GiB, limit_bytes: 5 * GiB }, 0, 5 * GiB],
    [
      "required == limit off a GiB multiple → OUT_OF_RANGE",
      { required_bytes: 5 * GiB + 1, limit_bytes: 5 * GiB + 1 },
      0,
      "out-of-range",
    ],
    ["limit below the minimum → OUT_OF_RANGE", { limit_bytes: GiB - 1 }, 0, "out-of-range"],
    ["required above limit → OUT_OF_RANGE", { required_bytes: 3 * GiB, limit_bytes: 2 * GiB }, 0, "out-of-range"],
    ["above 16 TiB → OUT_OF_RANGE", { required_bytes: MAX_VOLUME_BYTES + 1 }, 0, "out-of-range"],
    ["exactly 16 TiB", { required_bytes: MAX_VOLUME_BYTES }, 0, MAX_VOLUME_BYTES],
    ["negative required → INVALID_ARGUMENT", { required_bytes: -1 }, 0, "invalid-argument"],
    ["negative limit → INVALID_ARGUMENT", { limit_bytes: -1 }, 0, "invalid-argument"],
    ["a source larger than required raises the size", { required_bytes: GiB }, 3 * GiB - 5, 3 * GiB],
    [
      "a source that does not fit under the limit → OUT_OF_RANGE",
      { required_bytes: GiB, limit_bytes: 2 * GiB },
      3 * GiB,
      "out-of-range",
    ],
  ];
  for (const [name, range, floor, want] of rows)
    test(name, () => expect(kindOf(() => sizeForRange(range, floor))).toBe(want));
});

describe("sizeFits: an existing volume answers a repeated CreateVolume", () => {
  test.each([
    [2 * GiB, { required_bytes: GiB }, true],
    [2 * GiB, { required_bytes: 3 * GiB }, false],
    [2 * GiB, { required_bytes: GiB, limit_bytes: GiB }, false],
    [2 * GiB, { limit_bytes: 2 * GiB }, true],
    [GiB, undefined, true],
  ] as const)("%d bytes for %j → %p", (size, range, want) => expect(sizeFits(size, range)).toBe(want));
});
