import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { volumeIdForName } from "../../src/backends/ids.ts";
import { routerOsFixture, type BackendFixture } from "../backends/harness.ts";
import { createFileBackend } from "../../src/backends/file/file-backend.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { silentLogger } from "../../src/runtime/log.ts";
import { addSubsystem } from "../helpers/fake-sysfs.ts";
import { gcArgs, ids, makeSandbox, runGc, type Sandbox } from "./helpers.ts";

let sb: Sandbox | undefined;
let fixture: BackendFixture | undefined;
afterEach(async () => {
  sb?.cleanup();
  sb = undefined;
  await fixture?.close();
  fixture = undefined;
});

const req = (id: string) => ({ id, sizeBytes: 1 << 20, volumePath: "/storage-pool/metal-csi", meta: {} });

describe("backend disks (file backend)", () => {
  test("unreferenced disks older than the grace are collected; referenced, published and young ones are kept", async () => {
    sb = makeSandbox();
    const s = sb;
    const backend = createFileBackend({ dir: s.files, runner: createRunner(), log: silentLogger() });
    const [kept, orphan, published] = ["kept", "orphan", "published"].map((n) => volumeIdForName(n)) as [
      string,
      string,
      string,
    ];
    for (const id of [kept, orphan, published]) await backend.createDisk(req(id));
    await backend.setPublications(published, { publishedTo: ["node-a"] }, []);
    const refs = join(s.root, "refs.txt");
    writeFileSync(refs, `# PVs\n${kept}\n`);
    const base = ["--backend", "file", "--json", "--verbose", "--referenced-volumes", `@${refs}`];

    // Within the grace (default 5 min) nothing is a candidate.
    const young = await runGc(gcArgs(s, base));
    expect(young.code).toBe(0);
    expect(young.json!.skipped.find((x) => x.id === orphan)!.reason).toContain("younger than the grace");

    const planRun = await runGc(gcArgs(s, [...base, "--grace", "0s"]));
    expect(planRun.code).toBe(1);
    expect(ids(planRun.json!.candidates)).toEqual([`backend-disk ${orphan}`]);
    const skipped = new Map(planRun.json!.skipped.map((x) => [x.id, x.reason]));
    expect(skipped.get(kept)).toContain("referenced");
    expect(skipped.get(published)).toContain("published to node-a");

    const force = await runGc(gcArgs(s, [...base, "--grace", "0s", "--force"]));
    expect(force.code).toBe(0);
    expect(force.json!.results!.map((r) => `${r.status} ${r.id}`)).toEqual([`done ${orphan}`]);
    expect(existsSync(join(s.files, `${orphan}.img`))).toBe(false);
    expect(existsSync(join(s.files, `${kept}.img`))).toBe(true);
    expect(existsSync(join(s.files, `${published}.img`))).toBe(true);
  }, 60_000);

  test("without knowing which volumes PersistentVolumes reference, no disk is collected", async () => {
    sb = makeSandbox();
    const s = sb;
    const backend = createFileBackend({ dir: s.files, runner: createRunner(), log: silentLogger() });
    const id = volumeIdForName("unknown-refs");
    await backend.createDisk(req(id));
    const r = await runGc(gcArgs(s, ["--backend", "file", "--json", "--grace", "0s", "--force"]));
    expect(r.code).toBe(0);
    expect(r.json!.candidates).toEqual([]);
    expect(r.json!.skipped.find((x) => x.kind === "backend")!.reason).toContain(
      "cannot tell which volumes are referenced",
    );
    expect(existsSync(join(s.files, `${id}.img`))).toBe(true);
  }, 60_000);
});

describe("backend disks (RouterOS simulator)", () => {
  test("orphans are deleted over REST; a disk exported to a host, or connected on this node, is kept", async () => {
    sb = makeSandbox();
    const s = sb;
    fixture = await routerOsFixture();
    const sim = fixture.sim!;
    const b = fixture.backend;
    const [orphan, restricted, connected, referenced] = ["o", "r", "c", "ref"].map((n) =>
      volumeIdForName(`ros-${n}`),
    ) as [string, string, string, string];
    const disks = new Map<string, Awaited<ReturnType<typeof b.createDisk>>>();
    for (const id of [orphan, restricted, connected, referenced]) disks.set(id, await b.createDisk(req(id)));
    await b.setPublications(restricted, {}, ["nqn.2014-08.org.nvmexpress:uuid:host-a"]);
    // The disk "connected" is attached on this node right now, with a namespace that nothing mounts.
    const nqn = disks.get(connected)!.nqn!;
    expect(nqn.startsWith("nqn.2000-02.com.mikrotik:pvc-")).toBe(true);
    addSubsystem(s.sysfs, { nqn, namespaces: [{ dev: "259:9501" }] });
    const pw = join(s.root, "pw");
    writeFileSync(pw, sim.password + "\n");
    const args = gcArgs(s, [
      "--backend",
      "routeros",
      "--routeros-url",
      sim.url,
      "--routeros-user",
      sim.user,
      "--routeros-password-file",
      pw,
      "--routeros-ca-file",
      sim.caFile,
      "--referenced-volumes",
      referenced,
      "--grace",
      "0s",
      "--json",
      "--verbose",
    ]);
    const planRun = await runGc(args);
    expect(planRun.stderr).toBe("");
    // The connected disk's subsystem is itself a candidate, so its disk may go after the disconnect.
    expect(ids(planRun.json!.candidates)).toEqual(
      [`backend-disk ${connected}`, `backend-disk ${orphan}`, `nvme-subsystem ${nqn}`].sort(),
    );
    expect(planRun.json!.skipped.find((x) => x.id === restricted)!.reason).toContain("host-a");

    // Make the disconnect time out: the disk must then stay.
    s.hang(nqn);
    const force = await runGc([...args, "--force", "--step-timeout", "1s"]);
    expect(force.code).toBe(1);
    const byId = new Map(force.json!.results!.map((r) => [r.id, r.status]));
    expect(byId.get(nqn)).toBe("timed-out");
    expect(byId.get(connected)).toBe("skipped");
    expect(byId.get(orphan)).toBe("done");
    const slots = sim.state
      .disks()
      .map((d) => d.slot)
      .sort();
    expect(slots).toEqual([connected, referenced, restricted].sort());
  }, 90_000);
});
