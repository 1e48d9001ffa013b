import { join } from "node:path";
import { withDeadline } from "../runtime/deadline.ts";
import { listEntries, readAttribute } from "../sysfs/attributes.ts";

/**
 * NVMe discovery straight from sysfs. The kernel renumbers controllers on reconnect
 * (`nvme0` → `nvme3`), so callers ask by NQN every time and never keep a `/dev` path.
 *
 * Layout read (see reference/routeros.md):
 *   class/nvme/nvmeN/{subsysnqn,state,transport,address}, namespaces as subdirectories
 *   (`nvmeNnM` without multipath, hidden `nvmeScNnM` paths with it);
 *   class/nvme-subsystem/nvme-subsysS/{subsysnqn,iopolicy}, the multipath heads `nvmeSnM`
 *   and links to its controllers `nvmeN`. Every namespace directory has `dev` (major:minor)
 *   and `size` (512-byte sectors).
 */

export interface NvmeController {
  name: string;
  state: string;
  transport: string;
  address: string;
  subsysnqn: string;
}

export interface NvmeNamespace {
  name: string;
  /** "major:minor" of the block device. */
  dev: string;
  sizeBytes?: number;
}

export interface NvmeSubsystem {
  /** "nvme-subsysS", or "controller:nvmeN" when a controller's subsystem directory is missing. */
  name: string;
  nqn: string;
  iopolicy?: string;
  controllers: NvmeController[];
  /** Usable block devices first (`nvmeXnY`), then per-path ones (`nvmeXcYnZ`). */
  namespaces: NvmeNamespace[];
}

export interface SysfsOptions {
  /** Deadline for the whole scan; sysfs reads can stall behind a wedged driver. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const CONTROLLER = /^nvme\d+$/;
const HEAD_NAMESPACE = /^nvme\d+n\d+$/;
const ANY_NAMESPACE = /^nvme\d+(c\d+)?n\d+$/;
const SUBSYSTEM = /^nvme-subsys\d+$/;

const byNumber = (a: string, b: string) => a.localeCompare(b, "en", { numeric: true });

async function readNamespace(dir: string, name: string): Promise<NvmeNamespace | undefined> {
  const dev = await readAttribute(join(dir, name, "dev"));
  if (!dev || !/^\d+:\d+$/.test(dev)) return undefined;
  const sectors = Number(await readAttribute(join(dir, name, "size")));
  return Number.isFinite(sectors) && sectors > 0 ? { name, dev, sizeBytes: sectors * 512 } : { name, dev };
}

async function readController(
  classNvme: string,
  name: string,
): Promise<NvmeController & { namespaces: NvmeNamespace[] }> {
  const dir = join(classNvme, name);
  const [subsysnqn, state, transport, address, entries] = await Promise.all([
    readAttribute(join(dir, "subsysnqn")),
    readAttribute(join(dir, "state")),
    readAttribute(join(dir, "transport")),
    readAttribute(join(dir, "address")),
    listEntries(dir),
  ]);
  const namespaces: NvmeNamespace[] = [];
  for (const e of entries.filter((e) => ANY_NAMESPACE.test(e)).sort(byNumber)) {
    const ns = await readNamespace(dir, e);
    if (ns) namespaces.push(ns);
  }
  return {
    name,
    subsysnqn: subsysnqn ?? "",
    state: state ?? "unknown",
    transport: transport ?? "",
    address: address ?? "",
    namespaces,
  };
}

async function scan(sysfsRoot: string): Promise<NvmeSubsystem[]> {
  const classNvme = join(sysfsRoot, "class", "nvme");
  const classSubsys = join(sysfsRoot, "class", "nvme-subsystem");
  const controllers = await Promise.all(
    (await listEntries(classNvme))
      .filter((n) => CONTROLLER.test(n))
      .sort(byNumber)
      .map((n) => readController(classNvme, n)),
  );
  const claimed = new Set<string>();
  const result: NvmeSubsystem[] = [];

  for (const name of (await listEntries(classSubsys)).filter((n) => SUBSYSTEM.test(n)).sort(byNumber)) {
    const dir = join(classSubsys, name);
    const [nqn, iopolicy, entries] = await Promise.all([
      readAttribute(join(dir, "subsysnqn")),
      readAttribute(join(dir, "iopolicy")),
      listEntries(dir),
    ]);
    if (!nqn) continue;
    const linked = new Set(entries.filter((e) => CONTROLLER.test(e)));
    // Controllers belong by link, or by NQN when the link is missing (older kernels).
    const mine = controllers.filter((c) => linked.has(c.name) || (c.subsysnqn === nqn && !claimed.has(c.name)));
    mine.forEach((c) => claimed.add(c.name));
    const heads: NvmeNamespace[] = [];
    for (const e of entries.filter((e) => HEAD_NAMESPACE.test(e)).sort(byNumber)) {
      const ns = await readNamespace(dir, e);
      if (ns) heads.push(ns);
    }
    result.push(assemble(name, nqn, iopolicy, mine, heads));
  }
  for (const c of controllers.filter((c) => !claimed.has(c.name) && c.subsysnqn)) {
    const same = result.find(
      (s) => s.name === `controller:${c.name}` || (s.name.startsWith("controller:") && s.nqn === c.subsysnqn),
    );
    if (same) {
      same.controllers.push(strip(c));
      mergeNamespaces(same.namespaces, c.namespaces);
    } else {
      result.push(assemble(`controller:${c.name}`, c.subsysnqn, undefined, [c], []));
    }
  }
  return result;
}

function strip(c: NvmeController & { namespaces: NvmeNamespace[] }): NvmeController {
  const { namespaces: _ns, ...rest } = c;
  return rest;
}

function mergeNamespaces(into: NvmeNamespace[], more: NvmeNamespace[]) {
  for (const ns of more) if (!into.some((n) => n.name === ns.name)) into.push(ns);
  into.sort((a, b) => rank(a) - rank(b) || byNumber(a.name, b.name));
}

/** Whole-namespace devices (`nvmeXnY`) sort before per-path devices (`nvmeXcYnZ`). */
const rank = (ns: NvmeNamespace) => (HEAD_NAMESPACE.test(ns.name) ? 0 : 1);

function assemble(
  name: string,
  nqn: string,
  iopolicy: string | undefined,
  controllers: (NvmeController & { namespaces: NvmeNamespace[] })[],
  heads: NvmeNamespace[],
): NvmeSubsystem {
  const namespaces = [...heads];
  for (const c of controllers) mergeNamespaces(namespaces, c.namespaces);
  mergeNamespaces(namespaces, []);
  return { name, nqn, ...(iopolicy ? { iopolicy } : {}), controllers: controllers.map(strip), namespaces };
}

/** Every NVMe subsystem the kernel knows, with its controllers and namespaces. */
export function listSubsystems(sysfsRoot: string, opts: SysfsOptions = {}): Promise<NvmeSubsystem[]> {
  return withDeadline(
    `scan of ${sysfsRoot}/class/nvme*`,
    opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    () => scan(sysfsRoot),
    opts.signal,
  );
}

export type NqnLookup =
  | { state: "absent" }
  /** The subsystem exists but has no usable block device: controllers or namespaces are gone. */
  | { state: "orphaned"; subsystem: NvmeSubsystem }
  | { state: "found"; subsystem: NvmeSubsystem; namespace: NvmeNamespace };

/** Looks an NQN up, telling "not connected" apart from "connected but without a device". */
export async function lookupNqn(sysfsRoot: string, nqn: string, opts: SysfsOptions = {}): Promise<NqnLookup> {
  const subsystems = (await listSubsystems(sysfsRoot, opts)).filter((s) => s.nqn === nqn);
  if (subsystems.length === 0) return { state: "absent" };
  for (const subsystem of subsystems) {
    const namespace = subsystem.namespaces.find((ns) => HEAD_NAMESPACE.test(ns.name));
    if (namespace) return { state: "found", subsystem, namespace };
  }
  return { state: "orphaned", subsystem: subsystems[0]! };
}

/**
 * The block device for an NQN, preferring `nvmeXnY` (the multipath head, or the plain namespace)
 * over a per-path `nvmeXcYnZ`, which has no device node of its own. Null when none exists.
 */
export async function findNamespaceByNqn(
  sysfsRoot: string,
  nqn: string,
  opts: SysfsOptions = {},
): Promise<NvmeNamespace | null> {
  const found = await lookupNqn(sysfsRoot, nqn, opts);
  return found.state === "found" ? found.namespace : null;
}

/** `nvme_core` multipath switch: true/false, or undefined when the module parameter is absent. */
export async function nativeMultipath(sysfsRoot: string, opts: SysfsOptions = {}): Promise<boolean | undefined> {
  const v = await withDeadline(
    "read of nvme_core multipath",
    opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    () => readAttribute(join(sysfsRoot, "module", "nvme_core", "parameters", "multipath")),
    opts.signal,
  );
  if (v === undefined) return undefined;
  return v === "Y" || v === "1";
}
