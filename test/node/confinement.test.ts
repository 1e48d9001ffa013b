/**
 * Hostile Node requests change nothing outside what the volume owns: paths confined to the kubelet
 * dir (symlinks included), mounts and files that are not the volume's left alone, a path another
 * volume's record claims refused, backing files only from the file backend's directory and never
 * attached twice. Real loop devices, mkfs, mounts and tmpfs; every refusal is checked on disk too.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mountCap, mountsAt, nodeHarness } from "./harness.ts";

const h = nodeHarness();
const outside = mkdtempSync(join(tmpdir(), "rds-outside-"));
afterAll(() => {
  for (const m of readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(`${outside}/`))
    .reverse()) {
    execFileSync("umount", ["-l", m]);
  }
  rmSync(outside, { recursive: true, force: true });
  h.cleanup();
});

const MiB = 1024 * 1024;
const kubelet = join(h.base, "kubelet");
const kind = async (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e) => (e as { kind?: string }).kind ?? String(e),
  );
const loopsOf = (file: string) =>
  execFileSync("losetup", ["-j", file], { encoding: "utf8" }).trim().split("\n").filter(Boolean);
const tmpfsAt = (dir: string) => {
  mkdirSync(dir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "foreign", dir]);
};

/** NodeStageVolume of a loop volume with a mount capability. */
const stageLoop = (volume_id: string, staging_target_path: string, backingFile: string) =>
  h.service.NodeStageVolume({
    volume_id,
    staging_target_path,
    volume_capability: mountCap(),
    volume_context: { transport: "loop", backingFile },
  });

/** A canary file; the test checks it is still there with its content. */
function canary(path: string): () => boolean {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, "canary");
  return () => existsSync(path) && readFileSync(path, "utf8") === "canary";
}

describe("paths outside the kubelet dir are refused before anything happens", () => {
  test("NodeUnpublishVolume of a file outside: INVALID_ARGUMENT, the file stays", async () => {
    const alive = canary(join(outside, "x", "canary-file"));
    expect(
      await kind(
        h.service.NodeUnpublishVolume({ volume_id: "nobody-knows", target_path: join(outside, "x", "canary-file") }),
      ),
    ).toBe("invalid-argument");
    expect(alive()).toBe(true);
  });

  test("NodeUnstageVolume of a foreign mount outside: INVALID_ARGUMENT, still mounted", async () => {
    tmpfsAt(join(outside, "foreign-tmpfs"));
    expect(
      await kind(
        h.service.NodeUnstageVolume({ volume_id: "pvc-unknown", staging_target_path: join(outside, "foreign-tmpfs") }),
      ),
    ).toBe("invalid-argument");
    expect(mountsAt(join(outside, "foreign-tmpfs")).length).toBe(1);
  });

  test("NodeStageVolume / NodePublishVolume at a path outside: INVALID_ARGUMENT, nothing attached or mounted", async () => {
    const file = h.backingFile(64 * MiB);
    const ctx = { transport: "loop", backingFile: file };
    const stagingOut = join(outside, "etc-like");
    expect(
      await kind(
        h.service.NodeStageVolume({
          volume_id: "pvc-out",
          staging_target_path: stagingOut,
          volume_capability: mountCap(),
          volume_context: ctx,
        }),
      ),
    ).toBe("invalid-argument");
    expect(existsSync(stagingOut)).toBe(false);
    expect(loopsOf(file)).toEqual([]);
    const { staging } = h.paths("pvc-out");
    await h.service.NodeStageVolume({
      volume_id: "pvc-out",
      staging_target_path: staging,
      volume_capability: mountCap(),
      volume_context: ctx,
    });
    expect(
      await kind(
        h.service.NodePublishVolume({
          volume_id: "pvc-out",
          staging_target_path: staging,
          target_path: join(outside, "pub"),
          volume_capability: mountCap(),
          readonly: false,
        }),
      ),
    ).toBe("invalid-argument");
    expect(existsSync(join(outside, "pub"))).toBe(false);
    await h.service.NodeUnstageVolume({ volume_id: "pvc-out", staging_target_path: staging });
  });

  test("relative, dotted, NUL, control characters, over-long: INVALID_ARGUMENT naming the field, no directory made", async () => {
    const before = readdirSync(kubelet, { recursive: true }).length;
    const bad = [
      "relative/path",
      `${kubelet}/../etc`,
      `${kubelet}/./pods/x`,
      `${kubelet}//pods/x`,
      `${kubelet}/pods/a\0b`,
      `${kubelet}/pods/a\nb`,
      `${kubelet}/${"d/".repeat(2100)}x`,
      `${kubelet}/pods/${"n".repeat(256)}`,
      kubelet,
      "/",
    ];
    for (const target of bad) {
      const r = await h.service.NodeUnpublishVolume({ volume_id: "pvc-any", target_path: target }).catch((e) => e);
      expect({ target: target.slice(0, 80), kind: r.kind, field: r.field }).toEqual({
        target: target.slice(0, 80),
        kind: "invalid-argument",
        field: "target_path",
      });
    }
    expect(readdirSync(kubelet, { recursive: true }).length).toBe(before);
  });
});

describe("symlinks inside the kubelet dir are never followed out", () => {
  test("publish through pods/evil-link → outside: INVALID_ARGUMENT, nothing mounted outside", async () => {
    mkdirSync(join(kubelet, "pods"), { recursive: true });
    mkdirSync(join(outside, "target-dir"), { recursive: true });
    symlinkSync(join(outside, "target-dir"), join(kubelet, "pods", "evil-link"));
    const file = h.backingFile(64 * MiB);
    const { staging } = h.paths("pvc-link");
    await h.service.NodeStageVolume({
      volume_id: "pvc-link",
      staging_target_path: staging,
      volume_capability: mountCap(),
      volume_context: { transport: "loop", backingFile: file },
    });
    const target = join(kubelet, "pods", "evil-link", "mount");
    expect(
      await kind(
        h.service.NodePublishVolume({
          volume_id: "pvc-link",
          staging_target_path: staging,
          target_path: target,
          volume_capability: mountCap(),
          readonly: false,
        }),
      ),
    ).toBe("invalid-argument");
    expect(existsSync(join(outside, "target-dir", "mount"))).toBe(false);
    // The final component as a symlink: stat does not follow it, and the publish refuses it.
    symlinkSync(join(outside, "target-dir"), join(kubelet, "pods", "final-link"));
    expect(
      await kind(
        h.service.NodePublishVolume({
          volume_id: "pvc-link",
          staging_target_path: staging,
          target_path: join(kubelet, "pods", "final-link"),
          volume_capability: mountCap(),
          readonly: false,
        }),
      ),
    ).toBe("already-exists");
    expect(mountsAt(join(outside, "target-dir")).length).toBe(0);
    expect(
      await kind(
        h.service.NodeUnpublishVolume({ volume_id: "pvc-link", target_path: join(kubelet, "pods", "final-link") }),
      ),
    ).toBe("failed-precondition");
    expect(existsSync(join(kubelet, "pods", "final-link"))).toBe(true);
    await h.service.NodeUnstageVolume({ volume_id: "pvc-link", staging_target_path: staging });
  });

  test("stage at plugins/x/globalmount where globalmount → outside: FAILED_PRECONDITION, nothing mounted outside", async () => {
    // mkdir -p accepts a symlink to a directory as the directory, and mount follows it: the stage
    // path's mkdir child looks at the final component without following it.
    mkdirSync(join(outside, "staging-dir"), { recursive: true });
    mkdirSync(join(kubelet, "plugins", "pvc-final-link"), { recursive: true });
    const staging = join(kubelet, "plugins", "pvc-final-link", "globalmount");
    symlinkSync(join(outside, "staging-dir"), staging);
    const file = h.backingFile(64 * MiB);
    execFileSync("mkfs.ext4", ["-q", "-F", file]);
    expect(await kind(stageLoop("pvc-final-link", staging, file))).toBe("failed-precondition");
    expect(mountsAt(join(outside, "staging-dir")).length).toBe(0);
    expect(readdirSync(join(outside, "staging-dir"))).toEqual([]);
    // Unstage undoes the attach the refused stage left (error paths do not tear down) and leaves the symlink.
    await h.service.NodeUnstageVolume({ volume_id: "pvc-final-link", staging_target_path: staging });
    expect(loopsOf(file)).toEqual([]);
    expect(existsSync(staging)).toBe(true);
  });

  test("unpublish of pods/linkdir/file with linkdir → outside: INVALID_ARGUMENT, the outside file stays", async () => {
    const alive = canary(join(outside, "linked", "file"));
    symlinkSync(join(outside, "linked"), join(kubelet, "pods", "linkdir"));
    expect(
      await kind(
        h.service.NodeUnpublishVolume({ volume_id: "pvc-x", target_path: join(kubelet, "pods", "linkdir", "file") }),
      ),
    ).toBe("invalid-argument");
    expect(alive()).toBe(true);
  });
});

describe("only what the volume owns is unmounted or removed", () => {
  test("unknown volume: a canary file inside the kubelet dir is not removed", async () => {
    const path = join(kubelet, "pods", "p2", "volumes", "kubernetes.io~csi", "pv", "mount");
    const alive = canary(path);
    expect(await kind(h.service.NodeUnpublishVolume({ volume_id: "nobody-knows", target_path: path }))).toBe(
      "failed-precondition",
    );
    expect(alive()).toBe(true);
  });

  test("unknown volume: a foreign tmpfs at a staging or target path inside the kubelet dir stays mounted", async () => {
    const staging = join(kubelet, "plugins", "foreign", "globalmount");
    const target = join(kubelet, "pods", "p3", "volumes", "kubernetes.io~csi", "pv", "mount");
    tmpfsAt(staging);
    tmpfsAt(target);
    expect(await kind(h.service.NodeUnstageVolume({ volume_id: "pvc-foreign", staging_target_path: staging }))).toBe(
      "failed-precondition",
    );
    expect(await kind(h.service.NodeUnpublishVolume({ volume_id: "pvc-foreign", target_path: target }))).toBe(
      "failed-precondition",
    );
    expect(mountsAt(staging).length).toBe(1);
    expect(mountsAt(target).length).toBe(1);
    execFileSync("umount", [staging]);
    execFileSync("umount", [target]);
  });

  test("volume B named with volume A's paths: refused, A stays staged, published and recorded", async () => {
    const file = h.backingFile(64 * MiB);
    const a = h.paths("pvc-owner-a");
    await h.service.NodeStageVolume({
      volume_id: "pvc-owner-a",
      staging_target_path: a.staging,
      volume_capability: mountCap(),
      volume_context: { transport: "loop", backingFile: file },
    });
    await h.service.NodePublishVolume({
      volume_id: "pvc-owner-a",
      staging_target_path: a.staging,
      target_path: a.target,
      volume_capability: mountCap(),
      readonly: false,
    });
    const recordBefore = readFileSync(join(h.base, "state", "volumes", "pvc-owner-a.json"), "utf8");
    expect(await kind(h.service.NodeUnpublishVolume({ volume_id: "pvc-owner-b", target_path: a.target }))).toBe(
      "failed-precondition",
    );
    expect(await kind(h.service.NodeUnstageVolume({ volume_id: "pvc-owner-b", staging_target_path: a.staging }))).toBe(
      "failed-precondition",
    );
    expect(
      await kind(
        h.service.NodeStageVolume({
          volume_id: "pvc-owner-b",
          staging_target_path: a.staging,
          volume_capability: mountCap(),
          volume_context: { transport: "loop", backingFile: h.backingFile(64 * MiB) },
        }),
      ),
    ).toBe("failed-precondition");
    expect(mountsAt(a.staging).length).toBe(1);
    expect(mountsAt(a.target).length).toBe(1);
    expect(readFileSync(join(h.base, "state", "volumes", "pvc-owner-a.json"), "utf8")).toBe(recordBefore);
    await h.service.NodeUnpublishVolume({ volume_id: "pvc-owner-a", target_path: a.target });
    await h.service.NodeUnstageVolume({ volume_id: "pvc-owner-a", staging_target_path: a.staging });
    expect(loopsOf(file)).toEqual([]);
  });

  test("unstage with a staging path other than the recorded one: refused, nothing unmounted there", async () => {
    const file = h.backingFile(64 * MiB);
    const { staging } = h.paths("pvc-elsewhere");
    await h.service.NodeStageVolume({
      volume_id: "pvc-elsewhere",
      staging_target_path: staging,
      volume_capability: mountCap(),
      volume_context: { transport: "loop", backingFile: file },
    });
    const other = join(kubelet, "plugins", "other", "globalmount");
    tmpfsAt(other);
    expect(await kind(h.service.NodeUnstageVolume({ volume_id: "pvc-elsewhere", staging_target_path: other }))).toBe(
      "failed-precondition",
    );
    expect(mountsAt(other).length).toBe(1);
    execFileSync("umount", [other]);
    await h.service.NodeUnstageVolume({ volume_id: "pvc-elsewhere", staging_target_path: staging });
  });
});

describe("backing files (file backend)", () => {
  test("a file outside the file backend's directory is refused: INVALID_ARGUMENT, never attached", async () => {
    const file = join(outside, "zeros.img");
    execFileSync("truncate", ["-s", String(64 * MiB), file]);
    const { staging } = h.paths("pvc-any-file");
    const r = await h.service
      .NodeStageVolume({
        volume_id: "pvc-any-file",
        staging_target_path: staging,
        volume_capability: mountCap(),
        volume_context: { transport: "loop", backingFile: file },
      })
      .catch((e) => e);
    expect({ kind: r.kind, field: r.field }).toEqual({ kind: "invalid-argument", field: "volume_context.backingFile" });
    expect(loopsOf(file)).toEqual([]);
  });

  test("a symlink in the directory pointing elsewhere is refused: FAILED_PRECONDITION, never attached", async () => {
    const real = join(outside, "elsewhere.img");
    execFileSync("truncate", ["-s", String(64 * MiB), real]);
    symlinkSync(real, join(h.base, "link.img"));
    const { staging } = h.paths("pvc-symlinked");
    expect(
      await kind(
        h.service.NodeStageVolume({
          volume_id: "pvc-symlinked",
          staging_target_path: staging,
          volume_capability: mountCap(),
          volume_context: { transport: "loop", backingFile: join(h.base, "link.img") },
        }),
      ),
    ).toBe("failed-precondition");
    expect(loopsOf(real)).toEqual([]);
  });

  test("ten volumes naming one backing file at once: one stage succeeds, one loop device, one mkfs", async () => {
    const file = h.backingFile(64 * MiB);
    const ids = Array.from({ length: 10 }, (_, i) => `pvc-shared-${i}`);
    const results = await Promise.all(
      ids.map((id) =>
        kind(
          h.service.NodeStageVolume({
            volume_id: id,
            staging_target_path: h.paths(id).staging,
            volume_capability: mountCap(),
            volume_context: { transport: "loop", backingFile: file },
          }),
        ),
      ),
    );
    expect(results.filter((r) => r === "ok").length).toBe(1);
    expect(results.filter((r) => r !== "ok").every((r) => r === "aborted" || r === "failed-precondition")).toBe(true);
    expect(loopsOf(file).length).toBe(1);
    // Later, one by one: still refused, the file belongs to the staged volume.
    const winner = ids[results.indexOf("ok")]!;
    for (const id of ids.filter((x) => x !== winner)) {
      expect(
        await kind(
          h.service.NodeStageVolume({
            volume_id: id,
            staging_target_path: h.paths(id).staging,
            volume_capability: mountCap(),
            volume_context: { transport: "loop", backingFile: file },
          }),
        ),
      ).toBe("failed-precondition");
    }
    expect(loopsOf(file).length).toBe(1);
    await h.service.NodeUnstageVolume({ volume_id: winner, staging_target_path: h.paths(winner).staging });
    expect(loopsOf(file)).toEqual([]);
  });

  test("a backing file already attached by someone else is not attached a second time", async () => {
    const file = h.backingFile(64 * MiB);
    const dev = execFileSync("losetup", ["--find", "--show", file], { encoding: "utf8" }).trim();
    try {
      const { staging } = h.paths("pvc-foreign-loop");
      expect(await kind(stageLoop("pvc-foreign-loop", staging, file))).toBe("failed-precondition");
      expect(loopsOf(file).length).toBe(1);
      expect(existsSync(join(h.base, "state", "volumes", "pvc-foreign-loop.json"))).toBe(false);
    } finally {
      execFileSync("losetup", ["-d", dev]);
    }
  });
});
