import { afterAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { readStagingRecords } from "../../src/gc/records.ts";
import { parseStagingRecord, stagingRecords } from "../../src/node/staging-records.ts";

/** Every directory a test makes is removed at the end, whether its assertions held or not. */
const made: string[] = [];
const tempDir = (prefix: string) => {
  const d = mkdtempSync(prefix);
  made.push(d);
  return d;
};
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

const good = {
  volume_id: "pvc-1",
  transport: "nvme-tcp",
  nqn: "nqn.2000-02.com.mikrotik:pvc-1",
  staging_path: "/var/lib/kubelet/plugins/x/globalmount",
  fs_type: "ext4",
  access_type: "mount",
  access_mode: "SINGLE_NODE_WRITER",
  mount_flags: [],
  staged_at: "2026-11-22T00:00:00Z",
  state: "staged",
  created_staging_dir: true,
  publications: [],
};
const problemOf = (value: unknown, id = "pvc-1") => {
  const r = parseStagingRecord(value, id);
  return typeof r === "string" ? r : "ok";
};

describe("one staging record schema, validated by every reader", () => {
  test.each([
    ["a record the node writes", good, "ok"],
    ["a newer node's extra field is kept out of the way", { ...good, future_field: 1 }, "ok"],
    [
      "an older record without the optional fields",
      {
        volume_id: "pvc-1",
        transport: "loop",
        backing_file: "/d/pvc-1.img",
        staging_path: "/k/s",
        access_type: "block",
        staged_at: "t",
      },
      "ok",
    ],
    ["not an object", [good], "not a JSON object"],
    ["nvme-tcp without its NQN", { ...good, nqn: undefined }, "transport nvme-tcp without nqn"],
    ["loop without its backing file", { ...good, transport: "loop" }, "transport loop without backing_file"],
    ["an unknown transport", { ...good, transport: "iscsi" }, "unknown transport (transport)"],
    ["a relative staging path", { ...good, staging_path: "globalmount" }, "no absolute staging_path (staging_path)"],
    ["a publication without a path", { ...good, publications: [{ readonly: false, access_mode: "x" }] }, "ok-not"],
  ])("%s → %s", (_, value, want) => {
    const got = problemOf(value);
    if (want === "ok-not") expect(got).not.toBe("ok");
    else expect(got).toBe(want);
  });

  test("a record whose volume_id is not its file's name is refused", () => {
    expect(problemOf(good, "pvc-2")).toBe(`volume_id "pvc-1" does not match the file name`);
  });

  test("the node refuses to act on a malformed record (INTERNAL naming the file) and leaves it for an operator", async () => {
    const state = tempDir("/tmp/rds-records-");
    mkdirSync(join(state, "volumes"), { mode: 0o700 });
    const bad = JSON.stringify({ ...good, transport: "iscsi" });
    writeFileSync(join(state, "volumes", "pvc-1.json"), bad);
    const e = await stagingRecords(state)
      .read("pvc-1")
      .catch((x) => x);
    expect(e.kind).toBe("internal");
    expect(e.message).toContain("pvc-1");
    expect(readFileSync(join(state, "volumes", "pvc-1.json"), "utf8")).toBe(bad);
  });

  test("gc reads the same rules: a malformed record is reported with its reason, a good one is used", async () => {
    const state = tempDir("/tmp/rds-records-");
    mkdirSync(join(state, "volumes"), { mode: 0o700 });
    writeFileSync(join(state, "volumes", "pvc-1.json"), JSON.stringify(good));
    writeFileSync(
      join(state, "volumes", "pvc-2.json"),
      JSON.stringify({ ...good, volume_id: "pvc-2", nqn: undefined }),
    );
    writeFileSync(join(state, "volumes", "pvc-3.json"), "{not json");
    const scan = await readStagingRecords(state, { timeoutMs: 5_000 });
    expect(scan.records.map((r) => r.volume_id)).toEqual(["pvc-1"]);
    expect(scan.unreadable.map((u) => u.reason.split(":")[0])).toEqual([
      "transport nvme-tcp without nqn",
      "cannot read",
    ]);
  });

  test("writes make the records directory when it is missing, and never write through a symlink planted in its place", async () => {
    const fresh = tempDir("/tmp/rds-records-");
    const records = stagingRecords(join(fresh, "state"));
    const record = parseStagingRecord(good, "pvc-1");
    if (typeof record === "string") throw new Error(record);
    await records.write(record);
    expect(await records.read("pvc-1")).toMatchObject({ volume_id: "pvc-1" });
    const elsewhere = tempDir("/tmp/rds-elsewhere-");
    mkdirSync(join(fresh, "linked"));
    symlinkSync(elsewhere, join(fresh, "linked", "volumes"));
    const e = await stagingRecords(join(fresh, "linked"))
      .write(record)
      .catch((x) => x);
    expect((e as Error).message).toContain("not a plain directory");
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(existsSync(join(fresh, "state", "volumes", "pvc-1.json"))).toBe(true);
  });
});
