/**
 * Builds a sysfs tree shaped like the kernel's NVMe classes, for machines without NVMe.
 * Shared by the node, gc and doctor tests. Also a tiny CLI so the test `nvme` executable can
 * play the kernel on connect/disconnect: `bun fake-sysfs.ts connect|disconnect|orphan <root> …`.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface FakeControllerSpec {
  state?: string;
  transport?: string;
  address?: string;
}
export interface FakeNamespaceSpec {
  dev: string;
  sizeBytes?: number;
}
export interface FakeSubsystemSpec {
  nqn: string;
  controllers?: FakeControllerSpec[];
  namespaces?: FakeNamespaceSpec[];
  /** Native multipath naming: head `nvmeSnM` under the subsystem, hidden paths `nvmeScCnM`. */
  multipathStyle?: boolean;
  iopolicy?: string;
}
export interface FakeSubsystem {
  name: string;
  nqn: string;
  controllers: string[];
  /** Names of the usable block devices (`nvmeXnY`). */
  namespaces: string[];
}

const DEFAULT_ADDRESS = "traddr=10.42.0.1,trsvcid=4420,src_addr=10.42.0.10";
let nextMinor = 0;

const write = (path: string, text: string) => writeFileSync(path, text.endsWith("\n") ? text : text + "\n");
const classNvme = (root: string) => join(root, "class", "nvme");
const classSubsys = (root: string) => join(root, "class", "nvme-subsystem");

function nextIndex(dir: string, re: RegExp): number {
  const used = existsSync(dir)
    ? readdirSync(dir)
        .map((n) => re.exec(n)?.[1])
        .filter((x) => x !== undefined)
        .map(Number)
    : [];
  return used.length ? Math.max(...used) + 1 : 0;
}

function writeNamespace(dir: string, name: string, ns: FakeNamespaceSpec, root: string) {
  mkdirSync(join(dir, name), { recursive: true });
  write(join(dir, name, "dev"), ns.dev);
  write(join(dir, name, "size"), String(Math.floor((ns.sizeBytes ?? 1 << 30) / 512)));
  mkdirSync(join(root, "block", name), { recursive: true });
  write(join(root, "block", name, "dev"), ns.dev);
  write(join(root, "block", name, "size"), String(Math.floor((ns.sizeBytes ?? 1 << 30) / 512)));
}

/** Adds one subsystem as the kernel would after `nvme connect`; returns the names it got. */
export function addSubsystem(root: string, spec: FakeSubsystemSpec): FakeSubsystem {
  mkdirSync(classNvme(root), { recursive: true });
  mkdirSync(classSubsys(root), { recursive: true });
  const s = nextIndex(classSubsys(root), /^nvme-subsys(\d+)$/);
  const name = `nvme-subsys${s}`;
  const sdir = join(classSubsys(root), name);
  mkdirSync(sdir, { recursive: true });
  write(join(sdir, "subsysnqn"), spec.nqn);
  write(join(sdir, "iopolicy"), spec.iopolicy ?? "numa");
  const controllers: string[] = [];
  const namespaces: string[] = [];
  const ctrlSpecs = spec.controllers ?? [{}];
  const nsSpecs = spec.namespaces ?? [{ dev: `259:${nextMinor++}` }];
  ctrlSpecs.forEach((c, i) => {
    const n = nextIndex(classNvme(root), /^nvme(\d+)$/);
    const cname = `nvme${n}`;
    const cdir = join(classNvme(root), cname);
    mkdirSync(cdir, { recursive: true });
    write(join(cdir, "subsysnqn"), spec.nqn);
    write(join(cdir, "state"), c.state ?? "live");
    write(join(cdir, "transport"), c.transport ?? "tcp");
    write(join(cdir, "address"), c.address ?? DEFAULT_ADDRESS);
    write(join(cdir, "cntlid"), String(i + 1));
    symlinkSync(join("..", "..", "nvme", cname), join(sdir, cname));
    controllers.push(cname);
    nsSpecs.forEach((ns, j) => {
      if (spec.multipathStyle) {
        mkdirSync(join(cdir, `nvme${s}c${n}n${j + 1}`), { recursive: true });
      } else {
        writeNamespace(cdir, `nvme${n}n${j + 1}`, ns, root);
        namespaces.push(`nvme${n}n${j + 1}`);
      }
    });
  });
  if (spec.multipathStyle) {
    nsSpecs.forEach((ns, j) => {
      writeNamespace(sdir, `nvme${s}n${j + 1}`, ns, root);
      namespaces.push(`nvme${s}n${j + 1}`);
    });
    mkdirSync(join(root, "module", "nvme_core", "parameters"), { recursive: true });
    write(join(root, "module", "nvme_core", "parameters", "multipath"), "Y");
  }
  return { name, nqn: spec.nqn, controllers, namespaces };
}

/** Builds a whole tree at `root` (created if missing). */
export function makeFakeSysfs(root: string, specs: FakeSubsystemSpec[]): FakeSubsystem[] {
  mkdirSync(classNvme(root), { recursive: true });
  mkdirSync(classSubsys(root), { recursive: true });
  return specs.map((s) => addSubsystem(root, s));
}

function subsystemDirs(root: string, nqn: string): string[] {
  if (!existsSync(classSubsys(root))) return [];
  return readdirSync(classSubsys(root))
    .map((n) => join(classSubsys(root), n))
    .filter((d) => existsSync(join(d, "subsysnqn")) && readFileSync(join(d, "subsysnqn"), "utf8").trim() === nqn);
}

function controllersOf(root: string, nqn: string): string[] {
  if (!existsSync(classNvme(root))) return [];
  return readdirSync(classNvme(root)).filter((n) => {
    const f = join(classNvme(root), n, "subsysnqn");
    return existsSync(f) && readFileSync(f, "utf8").trim() === nqn;
  });
}

function readSpec(root: string, nqn: string): FakeSubsystemSpec {
  const ctrls = controllersOf(root, nqn);
  const devs: FakeNamespaceSpec[] = [];
  const seen = new Set<string>();
  const collect = (dir: string) => {
    for (const e of readdirSync(dir)) {
      const f = join(dir, e, "dev");
      if (/^nvme\d+n\d+$/.test(e) && existsSync(f)) {
        const dev = readFileSync(f, "utf8").trim();
        if (!seen.has(dev)) {
          seen.add(dev);
          devs.push({ dev, sizeBytes: Number(readFileSync(join(dir, e, "size"), "utf8")) * 512 });
        }
      }
    }
  };
  subsystemDirs(root, nqn).forEach(collect);
  ctrls.forEach((c) => collect(join(classNvme(root), c)));
  const multipathStyle = subsystemDirs(root, nqn).some((d) => readdirSync(d).some((e) => /^nvme\d+n\d+$/.test(e)));
  const controllers = ctrls.map((c) => ({
    state: readFileSync(join(classNvme(root), c, "state"), "utf8").trim(),
    transport: readFileSync(join(classNvme(root), c, "transport"), "utf8").trim(),
    address: readFileSync(join(classNvme(root), c, "address"), "utf8").trim(),
  }));
  return { nqn, controllers, namespaces: devs, multipathStyle };
}

/** Removes a subsystem with its controllers and namespaces, as `nvme disconnect` would. */
export function removeSubsystem(root: string, nqn: string): void {
  for (const c of controllersOf(root, nqn)) {
    const cdir = join(classNvme(root), c);
    for (const e of readdirSync(cdir))
      if (/^nvme\d+n\d+$/.test(e)) rmSync(join(root, "block", e), { recursive: true, force: true });
    rmSync(cdir, { recursive: true, force: true });
  }
  for (const d of subsystemDirs(root, nqn)) {
    for (const e of readdirSync(d))
      if (/^nvme\d+n\d+$/.test(e)) rmSync(join(root, "block", e), { recursive: true, force: true });
    rmSync(d, { recursive: true, force: true });
  }
}

/**
 * Simulates a reconnect that renumbers: the subsystem's controllers and namespaces come back
 * under fresh numbers (same NQN, same major:minor unless `newDevs` is given).
 */
export function renumber(root: string, nqn: string, newDevs?: string[]): FakeSubsystem {
  const spec = readSpec(root, nqn);
  // Reserve the old numbers while allocating so the new ones differ.
  const placeholder = `${classNvme(root)}/nvme${nextIndex(classNvme(root), /^nvme(\d+)$/) + 10}`;
  mkdirSync(placeholder, { recursive: true });
  const keepSub = join(classSubsys(root), `nvme-subsys${nextIndex(classSubsys(root), /^nvme-subsys(\d+)$/) + 10}`);
  mkdirSync(keepSub, { recursive: true });
  removeSubsystem(root, nqn);
  const added = addSubsystem(root, {
    ...spec,
    namespaces: spec.namespaces!.map((ns, i) => ({ ...ns, dev: newDevs?.[i] ?? ns.dev })),
  });
  rmSync(placeholder, { recursive: true, force: true });
  rmSync(keepSub, { recursive: true, force: true });
  return added;
}

/** Leaves the subsystem directory but removes its controllers and namespaces (incident 4). */
export function orphan(root: string, nqn: string): void {
  const dirs = subsystemDirs(root, nqn);
  for (const c of controllersOf(root, nqn)) rmSync(join(classNvme(root), c), { recursive: true, force: true });
  for (const d of dirs) {
    for (const e of readdirSync(d)) {
      if (/^nvme\d+(n\d+)?$/.test(e)) {
        if (/n\d+$/.test(e)) rmSync(join(root, "block", e), { recursive: true, force: true });
        rmSync(join(d, e), { recursive: true, force: true });
      }
    }
  }
}

if (import.meta.main) {
  const [cmd, root, nqn, ...rest] = process.argv.slice(2);
  if (!cmd || !root || !nqn) {
    console.error(
      "usage: fake-sysfs.ts connect <root> <nqn> [dev] [sizeBytes] [address] | disconnect <root> <nqn> | orphan <root> <nqn> | renumber <root> <nqn>",
    );
    process.exit(2);
  }
  if (cmd === "connect") {
    const [dev, size, address] = rest;
    const s = addSubsystem(root, {
      nqn,
      controllers: [{ address: address || DEFAULT_ADDRESS }],
      namespaces: [{ dev: dev || `259:${process.pid % 1000}`, sizeBytes: size ? Number(size) : undefined }],
    });
    console.log(s.namespaces[0] ?? "");
  } else if (cmd === "connect-orphan") {
    addSubsystem(root, { nqn, namespaces: [] });
  } else if (cmd === "disconnect") removeSubsystem(root, nqn);
  else if (cmd === "orphan") orphan(root, nqn);
  else if (cmd === "renumber") console.log(renumber(root, nqn).namespaces[0] ?? "");
  else {
    console.error(`unknown command ${cmd}`);
    process.exit(2);
  }
}
