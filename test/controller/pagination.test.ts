import { describe, expect, test } from "bun:test";
import { paginate } from "../../src/controller/pagination.ts";

const ids = (n: number) => Array.from({ length: n }, (_, i) => `pvc-${String(i).padStart(3, "0")}`);
const walk = (items: string[], max: number) => {
  const seen: string[] = [];
  let token = "";
  for (let guard = 0; guard < 1000; guard++) {
    const { page, next } = paginate(items, (x) => x, max, token);
    seen.push(...page);
    if (!next) return seen;
    token = next;
  }
  throw new Error("never ended");
};

describe("paginate", () => {
  test.each([
    [0, 0],
    [1, 5],
    [7, 3],
    [9, 3],
    [10, 0],
    [25, 7],
  ])("%d items, %d per page: every item once, in order", (n, max) => {
    expect(walk(ids(n).reverse(), max)).toEqual(ids(n));
  });

  test("a delete between pages neither repeats nor skips the others", () => {
    const items = ids(10);
    const first = paginate(items, (x) => x, 4, "");
    const after = items.filter((x) => x !== "pvc-002" && x !== "pvc-004");
    const second = paginate(after, (x) => x, 4, first.next);
    expect(first.page).toEqual(["pvc-000", "pvc-001", "pvc-002", "pvc-003"]);
    expect(second.page).toEqual(["pvc-005", "pvc-006", "pvc-007", "pvc-008"]);
  });

  test.each(["garbage", "YWZ0ZXI", Buffer.from("before:pvc-1").toString("base64url")])(
    "a token we did not issue (%s) → ABORTED",
    (token) => {
      expect(() => paginate(ids(3), (x) => x, 1, token)).toThrow(expect.objectContaining({ kind: "aborted" }));
    },
  );
});
