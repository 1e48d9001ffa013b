import { lstat, realpath } from "node:fs/promises";
import { join } from "node:path";
import { withDeadline } from "../runtime/deadline.ts";
import { describeFailure, ok, type Runner } from "../runtime/exec.ts";
import { failedPrecondition, internal, notFound, unavailable } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import { listEntries, readAttribute } from "../sysfs/attributes.ts";
import type { AttachedDevice, Connector, VolumeTarget } from "./connector.ts";

export interface LoopDeps {
  runner: Runner;
  log: Logger;
  timeoutMs?: number;
  /** Real sysfs: loop devices exist on every test machine, unlike NVMe. */
  sysfsRoot?: string;
  devRoot?: string;
}

/**
 * Volumes of the controller's file backend, attached as loop devices. The loop device is found
 * again by its backing file each time (`losetup -j`), never remembered.
 */
export function createLoopConnector(deps: LoopDeps): Connector {
  const timeoutMs = deps.timeoutMs ?? 15_000;
  const blockDir = join(deps.sysfsRoot ?? "/sys", "block");
  const fileOf = (v: VolumeTarget) => {
    if (!v.backingFile) throw internal(`volume ${v.volumeId} has no backing file recorded`);
    return v.backingFile;
  };

  /**
   * Loop devices backed by `file`, from /sys/block/loopN/loop/backing_file: no child process, so a
   * repeated NodeStage/NodePublish stays cheap. sysfs is kernel memory, but still read under a deadline.
   */
  function devicesOf(file: string, signal?: AbortSignal): Promise<AttachedDevice[]> {
    return withDeadline(
      `scan of ${blockDir} for loop devices`,
      timeoutMs,
      async () => {
        // The kernel records the resolved path; compare like with like. The reads are independent:
        // issued together, a scan costs about one read's round trip instead of one per loop device.
        const [wanted, entries] = await Promise.all([realpath(file).catch(() => file), listEntries(blockDir)]);
        const names = entries.filter((n) => /^loop\d+$/.test(n));
        const backs = await Promise.all(names.map((n) => readAttribute(join(blockDir, n, "loop", "backing_file"))));
        const mine = names.filter((_, i) => backs[i] === wanted || backs[i] === file);
        const found = await Promise.all(
          mine.map(async (name): Promise<AttachedDevice | null> => {
            const [dev, size] = await Promise.all([
              readAttribute(join(blockDir, name, "dev")),
              readAttribute(join(blockDir, name, "size")),
            ]);
            const sectors = Number(size);
            if (!dev) return null;
            return {
              devicePath: join(deps.devRoot ?? "/dev", name),
              dev,
              ...(sectors > 0 ? { sizeBytes: sectors * 512 } : {}),
            };
          }),
        );
        return found.filter((d) => d !== null);
      },
      signal,
    );
  }

  return {
    async find(v, signal) {
      const [d] = await devicesOf(fileOf(v), signal);
      return d ?? null;
    },
    async attach(v, signal) {
      const file = fileOf(v);
      // A symlink would let the name inside the file backend's directory point at any file on the host.
      const st = await withDeadline(
        `lstat ${file}`,
        timeoutMs,
        () =>
          lstat(file).catch((e) => {
            if ((e as NodeJS.ErrnoException).code === "ENOENT")
              throw notFound(`backing file ${file} of volume ${v.volumeId} does not exist`);
            throw e;
          }),
        signal,
      );
      if (!st.isFile())
        throw failedPrecondition(
          `backing file ${file} of volume ${v.volumeId} is not a regular file; not attaching it`,
        );
      const [existing] = await devicesOf(file, signal);
      if (existing) return existing;
      const r = await deps.runner("losetup", ["--find", "--show", file], {
        timeoutMs,
        signal,
        log: deps.log,
        logLevel: "info",
      });
      if (!ok(r)) {
        if (/No such file/i.test(r.stderr))
          throw notFound(`backing file ${file} of volume ${v.volumeId} does not exist`);
        throw unavailable(`attaching ${file} as a loop device failed: ${describeFailure(r)}`);
      }
      const [d] = await devicesOf(file, signal);
      if (!d) throw unavailable(`losetup attached ${file} as ${r.stdout.trim()} but it cannot be found again`);
      return d;
    },
    async refreshSize(v, signal) {
      for (const d of await devicesOf(fileOf(v), signal)) {
        const r = await deps.runner("losetup", ["--set-capacity", d.devicePath], {
          timeoutMs,
          signal,
          log: deps.log,
          logLevel: "info",
        });
        if (!ok(r)) throw unavailable(`refreshing the size of ${d.devicePath} failed: ${describeFailure(r)}`);
      }
    },
    async detach(v, signal) {
      for (const d of await devicesOf(fileOf(v), signal)) {
        const r = await deps.runner("losetup", ["--detach", d.devicePath], {
          timeoutMs,
          signal,
          log: deps.log,
          logLevel: "info",
        });
        if (!ok(r)) throw unavailable(`detaching ${d.devicePath} (${fileOf(v)}) failed: ${describeFailure(r)}`);
      }
    },
  };
}
