import { describe, expect, test } from "bun:test";
import {
  isSnapshotId,
  isVolumeId,
  nameUuid,
  nqnForVolume,
  snapshotIdForName,
  volumeIdForName,
} from "../../src/backends/ids.ts";

describe("volume and snapshot ids", () => {
  test("derived from the name: the same name always gives the same id, another name another id", () => {
    expect(volumeIdForName("pvc-a")).toBe(volumeIdForName("pvc-a"));
    expect(volumeIdForName("pvc-a")).not.toBe(volumeIdForName("pvc-b"));
    expect(volumeIdForName("x")).not.toBe(snapshotIdForName("x").replace(/^snap-/, "pvc-"));
  });

  test("shaped like the Go driver's ids, version-5 uuid bits set", () => {
    const u = nameUuid("volume", "n");
    expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(isVolumeId(volumeIdForName("n"))).toBe(true);
    expect(isSnapshotId(snapshotIdForName("n"))).toBe(true);
  });

  test.each([
    ["pvc-0c0c0c0c-0000-4000-8000-00000000c0f1", true, false],
    ["snap-0c0c0c0c-0000-4000-8000-00000000c0f1", false, true],
    ["pvc-0C0C0C0C-0000-4000-8000-00000000C0F1", false, false],
    ["pvc-../../etc", false, false],
    ["pvc-0c0c0c0c-0000-4000-8000-00000000c0f1/x", false, false],
    ["", false, false],
  ])("%s: volume %p, snapshot %p", (id, volume, snapshot) => {
    expect(isVolumeId(id)).toBe(volume);
    expect(isSnapshotId(id)).toBe(snapshot);
  });

  test.each([
    ["nqn.2000-02.com.mikrotik:pvc-", "pvc-1234", "nqn.2000-02.com.mikrotik:pvc-1234"],
    ["nqn.2000-02.com.mikrotik:k8s-", "pvc-1234", "nqn.2000-02.com.mikrotik:k8s-pvc-1234"],
    ["nqn.2000-02.com.mikrotik:pvc-", "other", "nqn.2000-02.com.mikrotik:pvc-other"],
  ])("NQN of volume under %s/%s is %s (always inside the prefix)", (prefix, id, want) => {
    expect(nqnForVolume(prefix, id)).toBe(want);
    expect(nqnForVolume(prefix, id).startsWith(prefix)).toBe(true);
  });
});
