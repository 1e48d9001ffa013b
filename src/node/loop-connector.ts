import { describeFailure, ok, type Runner } from "../runtime/exec.ts";
import { internal, notFound, unavailable } from "../runtime/errors.ts";
import type { Logger } from "../runtime/log.ts";
import type { AttachedDevice, Connector, VolumeTarget } from "./connector.ts";

export interface LoopDeps {
  runner: Runner;
  log: Logger;
  timeoutMs?: number;
}

/**
 * Volumes of the controller's file backend, attached as loop devices. The loop device is found
 * again by its backing file each time (`losetup -j`), never remembered.
 */
export function createLoopConnector(deps: LoopDeps): Connector {
  const timeoutMs = deps.timeoutMs ?? 15_000;
  const fileOf = (v: VolumeTarget) => {
    if (!v.backingFile) throw internal(`volume ${v.volumeId} has no backing file recorded`);
    return v.backingFile;
  };

  async function devicesOf(file: string, signal?: AbortSignal): Promise<AttachedDevice[]> {
    const r = await deps.runner("losetup", ["--list", "--noheadings", "--output", "NAME,MAJ:MIN,BACK-FILE", "-j", file],
      { timeoutMs, signal, log: deps.log });
    if (!ok(r)) throw unavailable(`listing loop devices of ${file} failed: ${describeFailure(r)}`);
    const found: AttachedDevice[] = [];
    for (const line of r.stdout.split("\n")) {
      const [name, dev, ...back] = line.trim().split(/\s+/);
      // `-j` matches by inode; make sure the path is ours too (a deleted file shows "(deleted)").
      if (name && dev && back.join(" ") === file) found.push({ devicePath: name, dev: dev.trim() });
    }
    return found;
  }

  async function sizeOf(device: string, signal?: AbortSignal): Promise<number | undefined> {
    const r = await deps.runner("blockdev", ["--getsize64", device], { timeoutMs, signal, log: deps.log });
    const n = Number(r.stdout.trim());
    return ok(r) && Number.isFinite(n) ? n : undefined;
  }

  const withSize = async (d: AttachedDevice, signal?: AbortSignal): Promise<AttachedDevice> => {
    const sizeBytes = await sizeOf(d.devicePath, signal);
    return sizeBytes === undefined ? d : { ...d, sizeBytes };
  };

  return {
    async find(v, signal) {
      const [d] = await devicesOf(fileOf(v), signal);
      return d ? withSize(d, signal) : null;
    },
    async attach(v, signal) {
      const file = fileOf(v);
      const [existing] = await devicesOf(file, signal);
      if (existing) return withSize(existing, signal);
      const r = await deps.runner("losetup", ["--find", "--show", file], { timeoutMs, signal, log: deps.log, logLevel: "info" });
      if (!ok(r)) {
        if (/No such file/i.test(r.stderr)) throw notFound(`backing file ${file} of volume ${v.volumeId} does not exist`);
        throw unavailable(`attaching ${file} as a loop device failed: ${describeFailure(r)}`);
      }
      const [d] = await devicesOf(file, signal);
      if (!d) throw unavailable(`losetup attached ${file} as ${r.stdout.trim()} but it cannot be found again`);
      return withSize(d, signal);
    },
    async refreshSize(v, signal) {
      for (const d of await devicesOf(fileOf(v), signal)) {
        const r = await deps.runner("losetup", ["--set-capacity", d.devicePath], { timeoutMs, signal, log: deps.log, logLevel: "info" });
        if (!ok(r)) throw unavailable(`refreshing the size of ${d.devicePath} failed: ${describeFailure(r)}`);
      }
    },
    async detach(v, signal) {
      for (const d of await devicesOf(fileOf(v), signal)) {
        const r = await deps.runner("losetup", ["--detach", d.devicePath], { timeoutMs, signal, log: deps.log, logLevel: "info" });
        if (!ok(r)) throw unavailable(`detaching ${d.devicePath} (${fileOf(v)}) failed: ${describeFailure(r)}`);
      }
    },
  };
}
