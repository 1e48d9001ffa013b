import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { listLoopDevices, parseLosetupJson } from "../../src/gc/loop-devices.ts";
import { isDomainError } from "../../src/runtime/errors.ts";
import { CommandFailedError } from "../../src/runtime/command-failed.ts";
import { createRunner } from "../../src/runtime/exec.ts";
import { parseIdList, referencedFromKubernetes } from "../../src/gc/referenced.ts";
import { createKubeClient } from "../../src/k8s/client.ts";
import { progressLine, renderPlanText } from "../../src/gc/render.ts";

describe("losetup --json", () => {
  test("trims padded device numbers, strips the deleted marker, ignores unbound devices", () => {
    const text = JSON.stringify({
      loopdevices: [
        { name: "/dev/loop0", "maj:min": "  7:0  ", "back-file": "/var/lib/rds-csi/volumes/pvc-a.img (deleted)" },
        { name: "/dev/loop1", "maj:min": "7:1", "back-file": "/srv/x.img" },
        { name: "/dev/loop2", "maj:min": "7:2", "back-file": null },
      ],
    });
    expect(parseLosetupJson(text)).toEqual([
      { device: "/dev/loop0", dev: "7:0", backingFile: "/var/lib/rds-csi/volumes/pvc-a.img", backingFileDeleted: true },
      { device: "/dev/loop1", dev: "7:1", backingFile: "/srv/x.img", backingFileDeleted: false },
    ]);
    expect(parseLosetupJson("")).toEqual([]);
  });

  test("a failing or babbling losetup is said as what happened, with no RPC code picked here", async () => {
    const dir = mkdtempSync("/tmp/rds-losetup-");
    try {
      const stand = (name: string, script: string) => {
        writeFileSync(join(dir, name), `#!/bin/sh\n${script}\n`);
        chmodSync(join(dir, name), 0o755);
        return listLoopDevices(createRunner(), { timeoutMs: 10_000, losetupBin: join(dir, name) }).catch((e) => e);
      };
      const failed = await stand("fails", "echo 'losetup: cannot open /dev/loop-control' >&2; exit 1");
      expect(failed).toBeInstanceOf(CommandFailedError);
      expect(isDomainError(failed)).toBe(false);
      expect((failed as CommandFailedError).result.exitCode).toBe(1);
      expect((failed as CommandFailedError).message).toContain("cannot open /dev/loop-control");
      const babble = await stand("babbles", "echo 'not json'");
      expect(babble).toBeInstanceOf(Error);
      expect(isDomainError(babble)).toBe(false);
      expect((babble as Error).message).toContain("not JSON");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("referenced volumes", () => {
  test("id files: lines, commas, comments, or a JSON array; a bad JSON file names the option", () => {
    expect(parseIdList("# pvs\npvc-a, pvc-b\n\npvc-c\n", "f")).toEqual(["pvc-a", "pvc-b", "pvc-c"]);
    expect(parseIdList('["pvc-a","pvc-b"]', "f")).toEqual(["pvc-a", "pvc-b"]);
    expect(() => parseIdList("[1,2]", "/x")).toThrow(/referenced-volumes.*JSON array/);
  });

  const pages: Record<string, unknown> = {
    "": {
      items: [{ spec: { csi: { volumeHandle: "pvc-1", driver: "rds.csi.srvlab.io" } } }, { spec: { hostPath: {} } }],
      metadata: { continue: "p2" },
    },
    p2: { items: [{ spec: { csi: { volumeHandle: "pvc-2", driver: "other" } } }], metadata: {} },
  };
  const seenAuth: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const url = new URL(req.url);
      seenAuth.push(req.headers.get("authorization") ?? "");
      if (url.pathname !== "/api/v1/persistentvolumes") return new Response("no", { status: 404 });
      if (req.headers.get("authorization") !== "Bearer t0ken") return new Response("denied", { status: 401 });
      return Response.json(pages[url.searchParams.get("continue") ?? ""]);
    },
  });
  afterAll(() => server.stop(true));

  test("the PV list is read page by page and every CSI handle counts", async () => {
    const r = await referencedFromKubernetes(
      createKubeClient({
        access: { server: `http://127.0.0.1:${server.port}`, token: "t0ken", source: "test" },
        timeoutMs: 5_000,
      }),
    );
    expect(r.state).toBe("known");
    expect([...(r.state === "known" ? r.volumeIds : [])].sort()).toEqual(["pvc-1", "pvc-2"]);
    expect(seenAuth.every((a) => a === "Bearer t0ken")).toBe(true);
  });

  test("a refused request is an error, never an empty list", async () => {
    await expect(
      referencedFromKubernetes(
        createKubeClient({
          access: { server: `http://127.0.0.1:${server.port}`, token: "wrong", source: "test" },
          timeoutMs: 5_000,
        }),
      ),
    ).rejects.toThrow(/HTTP 401/);
  });
});

describe("output", () => {
  test("the table shows kind, id, the action and the reason; skipped items only with --verbose", () => {
    const p = {
      candidates: [
        {
          kind: "nvme-subsystem" as const,
          id: "nqn.x:pvc-1",
          reason: "not mounted",
          action: { type: "nvme-disconnect" as const, nqn: "nqn.x:pvc-1" },
        },
      ],
      skipped: [{ kind: "nvme-subsystem" as const, id: "nqn.y:root", reason: "outside-prefix: …" }],
    };
    const quiet = renderPlanText(p, { verbose: false, notes: { warnings: [] } });
    expect(quiet).toContain("nvme-subsystem  nqn.x:pvc-1  nvme disconnect -n nqn.x:pvc-1  not mounted");
    expect(quiet).not.toContain("nqn.y:root");
    expect(quiet).toContain("1 item(s) left alone (--verbose lists them)");
    expect(renderPlanText(p, { verbose: true, notes: { warnings: ["stale lock"] } })).toMatch(
      /warning: stale lock[\s\S]*nqn\.y:root\s+outside-prefix/,
    );
  });

  test("the progress line is written only to a terminal", () => {
    const written: string[] = [];
    progressLine({ isTTY: false, write: (s) => written.push(s) })(0, 2, { kind: "loop-device", id: "/dev/loop1" });
    expect(written).toEqual([]);
    progressLine({ isTTY: true, write: (s) => written.push(s) })(0, 2, { kind: "loop-device", id: "/dev/loop1" });
    expect(written.join("")).toContain("[1/2] loop-device /dev/loop1");
  });
});
