import { join } from "node:path";
import { classifyNqn, type NqnPolicy, type NqnVerdict } from "../config/nqn.ts";
import { sleep } from "../runtime/deadline.ts";
import { DomainError, internal, unavailable } from "../runtime/errors.ts";
import { describeFailure, ok, type Runner } from "../runtime/exec.ts";
import type { Logger } from "../runtime/log.ts";
import type { AttachedDevice, Connector, VolumeTarget } from "../node/connector.ts";
import { lookupNqn, type NqnLookup, type NvmeSubsystem } from "./sysfs.ts";

/**
 * The NQN gate said no: the subsystem is outside the prefix, protected, or backs a system mount.
 * Callers switch on the verdict (an Event for a system volume); the kind is the one the node
 * service has always answered with, FAILED_PRECONDITION, until the service maps this type itself.
 */
export class NqnRefusedError extends DomainError {
  constructor(
    readonly nqn: string,
    readonly action: string,
    readonly verdict: NqnVerdict & { managed: false },
  ) {
    super("failed-precondition", `refusing to ${action} ${nqn}: it ${verdict.detail} (${verdict.reason})`);
  }
}

export interface NvmeTcpDeps {
  runner: Runner;
  log: Logger;
  sysfsRoot: string;
  devRoot: string;
  policy: NqnPolicy;
  /** Subsystems backing mounts outside the kubelet tree, computed at the moment of asking. */
  systemNqns: (signal?: AbortSignal) => Promise<ReadonlySet<string>>;
  hostNqn?: string;
  /** The nvme-cli executable; tests pass a fabricated one. */
  nvmeBin?: string;
  timeouts?: Partial<NvmeTcpTimeouts>;
}

export interface NvmeTcpTimeouts {
  connectMs: number;
  disconnectMs: number;
  sysfsMs: number;
  /** How long a block device may take to appear after a successful connect. */
  deviceSettleMs: number;
  pollMs: number;
  /** One `nvme ns-rescan`. */
  rescanMs: number;
  /** How long a rescanned namespace may take to show its new size (the rescan only queues the scan). */
  rescanSettleMs: number;
}

const DEFAULTS: NvmeTcpTimeouts = {
  connectMs: 30_000,
  disconnectMs: 30_000,
  sysfsMs: 5_000,
  deviceSettleMs: 15_000,
  pollMs: 200,
  rescanMs: 10_000,
  rescanSettleMs: 5_000,
};
const ALREADY = /already connected|already in progress|EALREADY/i;

/**
 * NVMe/TCP attach through nvme-cli. The device is found by NQN in sysfs on every call; every
 * connect and disconnect first passes classifyNqn, so nothing outside the managed set is touched.
 */
export function createNvmeTcpConnector(deps: NvmeTcpDeps): Connector {
  const t = { ...DEFAULTS, ...deps.timeouts };
  const bin = deps.nvmeBin ?? "nvme";

  const lookup = (nqn: string, signal?: AbortSignal) =>
    lookupNqn(deps.sysfsRoot, nqn, { timeoutMs: t.sysfsMs, signal });
  const toDevice = (l: NqnLookup & { state: "found" }): AttachedDevice => ({
    devicePath: join(deps.devRoot, l.namespace.name),
    dev: l.namespace.dev,
    ...(l.namespace.sizeBytes ? { sizeBytes: l.namespace.sizeBytes } : {}),
  });
  const nqnOf = (v: VolumeTarget) => {
    if (!v.nqn) throw internal(`volume ${v.volumeId} has no NQN recorded`);
    return v.nqn;
  };

  /**
   * A namespace device outlives its controller's connection: while the kernel reconnects
   * (`connecting`, `resetting`) the device is there but every I/O on it waits, up to ctrl_loss_tmo
   * or forever. Null when a controller is live; otherwise what the controllers are doing.
   */
  const notLive = (s: NvmeSubsystem): string | null => {
    if (s.controllers.some((c) => c.state === "live")) return null;
    // The kernel deleted the controller (ctrl_loss_tmo passed); a mounted namespace lingers until closed.
    if (s.controllers.length === 0)
      return "has no NVMe controller left (the kernel stopped reconnecting: ctrl_loss_tmo passed); I/O on the volume fails";
    return `has no live NVMe controller (${s.controllers.map((c) => `${c.name} is ${c.state}`).join(", ")}); I/O on the volume waits until the kernel reconnects or gives up (ctrl_loss_tmo)`;
  };

  async function gate(nqn: string, action: string, signal?: AbortSignal) {
    const verdict = classifyNqn(nqn, deps.policy, await deps.systemNqns(signal));
    if (!verdict.managed) {
      deps.log.warn({ nqn, reason: verdict.reason, action }, "refused: NQN is not managed by this driver");
      throw new NqnRefusedError(nqn, action, verdict);
    }
  }

  async function connect(v: VolumeTarget, nqn: string, signal?: AbortSignal) {
    const args = [
      "connect",
      "-t",
      "tcp",
      "-a",
      v.address ?? "",
      "-s",
      String(v.port ?? 4420),
      "-n",
      nqn,
      "-l",
      String(v.ctrlLossTmo ?? -1),
      "-c",
      String(v.reconnectDelay ?? 5),
    ];
    if (v.keepAliveTmo) args.push("-k", String(v.keepAliveTmo));
    if (deps.hostNqn) args.push("-q", deps.hostNqn);
    const r = await deps.runner(bin, args, { timeoutMs: t.connectMs, signal, log: deps.log, logLevel: "info" });
    if (ok(r) || ALREADY.test(r.stderr + r.stdout)) return;
    if (r.timedOut)
      throw unavailable(`nvme connect to ${nqn} at ${v.address}:${v.port} did not finish within ${t.connectMs} ms`);
    throw unavailable(`nvme connect to ${nqn} failed: ${describeFailure(r)}`);
  }

  async function disconnect(nqn: string, signal?: AbortSignal) {
    await gate(nqn, "disconnect", signal);
    const r = await deps.runner(bin, ["disconnect", "-n", nqn], {
      timeoutMs: t.disconnectMs,
      signal,
      log: deps.log,
      logLevel: "info",
    });
    if (!ok(r)) throw unavailable(`nvme disconnect of ${nqn} failed: ${describeFailure(r)}`);
  }

  async function waitForDevice(nqn: string, signal?: AbortSignal): Promise<NqnLookup> {
    const until = Date.now() + t.deviceSettleMs;
    for (;;) {
      const l = await lookup(nqn, signal);
      if (l.state === "found" || Date.now() >= until) return l;
      await sleep(t.pollMs, signal);
    }
  }

  return {
    async find(v, signal) {
      const l = await lookup(nqnOf(v), signal);
      return l.state === "found" ? toDevice(l) : null;
    },

    async attach(v, signal) {
      const nqn = nqnOf(v);
      const log = deps.log.child({ nqn, volume_id: v.volumeId });
      // Checked even when already connected: a system volume must never be handed to a pod.
      await gate(nqn, "connect", signal);
      let l = await lookup(nqn, signal);
      if (l.state === "found") {
        const problem = notLive(l.subsystem);
        if (problem) {
          // blkid or fsck on this device would sit in D state until the kernel gives up; leave it alone.
          log.warn({ problem, device: l.namespace.name }, "leftover connection is not live; not touching its device");
          throw unavailable(
            `${nqn} ${problem}; not touching /dev/${l.namespace.name}; retry later or see rds-csi doctor and rds-csi gc`,
          );
        }
        return toDevice(l);
      }
      let reconnected = false;
      if (l.state === "orphaned") {
        log.warn(
          { subsystem: l.subsystem.name },
          "subsystem present without a block device; disconnecting to reconnect once",
        );
        await disconnect(nqn, signal);
        reconnected = true;
      }
      await connect(v, nqn, signal);
      l = await waitForDevice(nqn, signal);
      if (l.state === "found") return toDevice(l);
      if (!reconnected && l.state === "orphaned") {
        log.warn("connected but no block device appeared; disconnecting to reconnect once");
        await disconnect(nqn, signal);
        await connect(v, nqn, signal);
        l = await waitForDevice(nqn, signal);
        if (l.state === "found") return toDevice(l);
      }
      // Fail dumb: the connection stays; gc decides about it later.
      log.error(
        { state: l.state, gc_would: `disconnect ${nqn} (nvme disconnect -n ${nqn})` },
        "no block device after connect; leaving the connection in place",
      );
      throw unavailable(
        `connected to ${nqn} but no block device appeared within ${t.deviceSettleMs} ms (subsystem ${l.state}); left in place, see rds-csi gc`,
      );
    },

    async refreshSize(v, signal, minBytes) {
      const nqn = nqnOf(v);
      const l = await lookup(nqn, signal);
      if (l.state !== "found") return;
      // Without an asynchronous event from the target the kernel keeps the old size until asked.
      for (const c of l.subsystem.controllers.filter((c) => c.state === "live")) {
        const r = await deps.runner(bin, ["ns-rescan", join(deps.devRoot, c.name)], {
          timeoutMs: t.rescanMs,
          signal,
          log: deps.log,
          logLevel: "info",
        });
        if (!ok(r)) throw unavailable(`nvme ns-rescan of ${c.name} (${nqn}) failed: ${describeFailure(r)}`);
      }
      if (!minBytes) return;
      // The rescan ioctl only queues the kernel's scan work; the size changes when it has run.
      const until = Date.now() + t.rescanSettleMs;
      for (;;) {
        const now = await lookup(nqn, signal);
        if (now.state !== "found" || (now.namespace.sizeBytes ?? 0) >= minBytes || Date.now() >= until) return;
        await sleep(t.pollMs, signal);
      }
    },

    async transportProblem(v, signal) {
      const nqn = nqnOf(v);
      const l = await lookup(nqn, signal);
      if (l.state === "absent") return `${nqn} is not connected`;
      const problem = notLive(l.subsystem);
      return problem ? `${nqn} ${problem}` : null;
    },

    async detach(v, signal) {
      const nqn = nqnOf(v);
      const l = await lookup(nqn, signal);
      if (l.state === "absent") return;
      await disconnect(nqn, signal);
    },
  };
}
