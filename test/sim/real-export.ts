import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

/**
 * The "real export" mode of the RouterOS simulator: every `/disk` row with `nvme-tcp-export=yes`
 * becomes a kernel NVMe/TCP target (nvmet, configured through configfs) the way the RDS exports it,
 * so a node in the same machine connects with a real `nvme connect` and gets a real block device.
 *
 * Modelled after MikroTik's /disk documentation (shared/reference/routeros.md):
 * - the subsystem NQN is `nvme-tcp-server-nqn`, the slot when that is empty;
 * - the target listens on `nvme-tcp-server-port` (4420 unless set);
 * - `nvme-tcp-server-allow-host-name` restricts which host NQNs may connect. The docs do not say
 *   what an empty value means; we assume "any host" (that is how a fresh export behaves in the
 *   Go driver's use: it connects before any restriction is set);
 * - the namespace is the row's backing file at its `file-size`; `set file-size=` grows it.
 * The docs say nothing about namespace-change events on a resize. Incident: the RDS does not
 * always send the asynchronous event (AEN), so a grow can be made with or without one
 * (`growWithoutAen`): without it only the file grows, and the host sees the new size only when it
 * re-identifies the namespace (`nvme ns-rescan`), which is when nvmet revalidates the file size
 * (measured on Debian's 6.1 kernel: nvmet_execute_identify_ns revalidates).
 *
 * Backing files are sparse files under `dataDir`, which should be a filesystem with O_DIRECT and
 * fallocate(ZERO_RANGE) (the RDS keeps them on Btrfs): on tmpfs nvmet fails the Write Zeroes that
 * mkfs sends, and the kernel logs I/O errors no real target would cause (measured in the VM).
 */

type Row = Record<string, string>;

export interface DiskExporter {
  /** A row was added; `source` is the row it was copied from (copy-from), if any. */
  added(row: Row, source?: Row): void;
  /** A row's fields changed (size, export flag, allowed hosts, port). */
  changed(row: Row, before: Row): void;
  removed(row: Row): void;
}

export interface RealExportOptions {
  /** Where configfs is mounted; nvmet's tree is `<configfs>/nvmet`. */
  configfs?: string;
  /** Directory for the backing files. */
  dataDir: string;
  /** Address the ports listen on. */
  address?: string;
}

export interface RealExport extends DiskExporter {
  /** The next grow of this NQN changes only the file: no revalidation, no AEN. */
  growWithoutAen(nqn: string): void;
  /** Takes the port away (the RDS unreachable): its subsystems stay, connected hosts lose them. */
  removePort(port: number): void;
  /** Brings a removed port back with every exported subsystem on it. */
  restorePort(port: number): void;
  /** Removes a subsystem from the target while its row stays (an orphan as seen from the node). */
  dropSubsystem(nqn: string): void;
  /** Exports a subsystem with no namespace: a host connects but no block device ever appears. */
  exportEmpty(nqn: string, port: number): void;
  /** Subsystem NQNs configured in nvmet now. */
  subsystems(): string[];
  /** Removes everything this exporter configured (ports, subsystems, hosts, files). */
  close(): void;
}

const truthy = (v: string | undefined) => v === "yes" || v === "true";

export function createRealExport(opts: RealExportOptions): RealExport {
  const nvmet = join(opts.configfs ?? "/sys/kernel/config", "nvmet");
  const address = opts.address ?? "127.0.0.1";
  if (!existsSync(nvmet)) throw new Error(`${nvmet} does not exist: load nvmet and mount configfs first`);
  mkdirSync(opts.dataDir, { recursive: true });

  const subsysDir = (nqn: string) => join(nvmet, "subsystems", nqn);
  const portDir = (port: number) => join(nvmet, "ports", String(port));
  const hostDir = (nqn: string) => join(nvmet, "hosts", nqn);
  /** nqn → port for every subsystem this exporter made. */
  const exported = new Map<string, number>();
  const files = new Map<string, string>();
  const downPorts = new Set<number>();
  const quietGrow = new Set<string>();
  const ourHosts = new Set<string>();
  const ourPorts = new Set<number>();

  const write = (path: string, value: string) => writeFileSync(path, value);
  const nqnOf = (row: Row) => row["nvme-tcp-server-nqn"] || row.slot!;
  const portOf = (row: Row) => Number(row["nvme-tcp-server-port"] || "4420");
  const fileOf = (row: Row) => join(opts.dataDir, `${row.slot}.img`);

  function ensurePort(port: number) {
    const dir = portDir(port);
    if (existsSync(dir)) return;
    mkdirSync(dir);
    ourPorts.add(port);
    write(join(dir, "addr_trtype"), "tcp");
    write(join(dir, "addr_adrfam"), "ipv4");
    write(join(dir, "addr_traddr"), address);
    write(join(dir, "addr_trsvcid"), String(port));
  }

  function link(nqn: string, port: number) {
    if (downPorts.has(port)) return;
    ensurePort(port);
    const l = join(portDir(port), "subsystems", nqn);
    if (!existsSync(l)) symlinkSync(subsysDir(nqn), l);
  }

  function unlink(nqn: string, port: number) {
    const l = join(portDir(port), "subsystems", nqn);
    // Dropping the link makes nvmet delete the controllers of this subsystem on the port.
    try {
      unlinkSync(l);
    } catch {
      /* not linked */
    }
  }

  function setAllowedHosts(nqn: string, allow: string) {
    const dir = subsysDir(nqn);
    const wanted = allow
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    for (const h of readdirSync(join(dir, "allowed_hosts")))
      if (!wanted.includes(h)) unlinkSync(join(dir, "allowed_hosts", h));
    // nvmet refuses host links (EINVAL) while allow_any_host is set, and the switch back while links exist.
    if (wanted.length === 0) {
      write(join(dir, "attr_allow_any_host"), "1");
      return;
    }
    write(join(dir, "attr_allow_any_host"), "0");
    for (const h of wanted) {
      if (!existsSync(hostDir(h))) {
        mkdirSync(hostDir(h));
        ourHosts.add(h);
      }
      const l = join(dir, "allowed_hosts", h);
      if (!existsSync(l)) symlinkSync(hostDir(h), l);
    }
  }

  function makeSubsystem(nqn: string) {
    const dir = subsysDir(nqn);
    mkdirSync(dir);
    write(join(dir, "attr_allow_any_host"), "1");
  }

  function addNamespace(nqn: string, file: string) {
    const ns = join(subsysDir(nqn), "namespaces", "1");
    mkdirSync(ns);
    write(join(ns, "device_path"), file);
    write(join(ns, "enable"), "1");
  }

  function removeSubsystem(nqn: string) {
    const port = exported.get(nqn);
    if (port !== undefined) unlink(nqn, port);
    const dir = subsysDir(nqn);
    if (!existsSync(dir)) return;
    const nsRoot = join(dir, "namespaces");
    for (const n of readdirSync(nsRoot)) {
      try {
        write(join(nsRoot, n, "enable"), "0");
      } catch {
        /* already disabled */
      }
      rmdirSync(join(nsRoot, n));
    }
    for (const h of readdirSync(join(dir, "allowed_hosts"))) unlinkSync(join(dir, "allowed_hosts", h));
    rmdirSync(dir);
  }

  function exportRow(row: Row) {
    const nqn = nqnOf(row);
    const port = portOf(row);
    if (exported.has(nqn)) return;
    makeSubsystem(nqn);
    addNamespace(nqn, fileOf(row));
    setAllowedHosts(nqn, row["nvme-tcp-server-allow-host-name"] ?? "");
    exported.set(nqn, port);
    link(nqn, port);
  }

  function unexport(nqn: string) {
    removeSubsystem(nqn);
    exported.delete(nqn);
  }

  function removeEmptyPorts() {
    for (const p of ourPorts) {
      if (existsSync(portDir(p)) && readdirSync(join(portDir(p), "subsystems")).length === 0) rmdirSync(portDir(p));
    }
  }

  return {
    added(row, source) {
      const file = fileOf(row);
      if (source && files.has(source.slot!)) copyFileSync(files.get(source.slot!)!, file);
      else closeSync(openSync(file, "w"));
      truncateSync(file, Number(row["file-size"]));
      files.set(row.slot!, file);
      if (truthy(row["nvme-tcp-export"])) exportRow(row);
    },

    changed(row, before) {
      const nqn = nqnOf(row);
      const size = Number(row["file-size"]);
      if (size !== Number(before["file-size"])) {
        truncateSync(fileOf(row), size);
        // revalidate_size re-reads the file's size and queues the namespace-changed AEN to hosts.
        if (exported.has(nqn) && !quietGrow.delete(nqn))
          write(join(subsysDir(nqn), "namespaces", "1", "revalidate_size"), "1");
      }
      const wasExported = truthy(before["nvme-tcp-export"]);
      const isExported = truthy(row["nvme-tcp-export"]);
      if (wasExported && !isExported) unexport(nqn);
      else if (!wasExported && isExported) exportRow(row);
      else if (isExported) {
        if (portOf(row) !== portOf(before)) {
          unlink(nqn, portOf(before));
          exported.set(nqn, portOf(row));
          link(nqn, portOf(row));
        }
        if ((row["nvme-tcp-server-allow-host-name"] ?? "") !== (before["nvme-tcp-server-allow-host-name"] ?? "")) {
          setAllowedHosts(nqn, row["nvme-tcp-server-allow-host-name"] ?? "");
        }
      }
    },

    removed(row) {
      unexport(nqnOf(row));
      rmSync(fileOf(row), { force: true });
      files.delete(row.slot!);
    },

    growWithoutAen(nqn) {
      quietGrow.add(nqn);
    },

    removePort(port) {
      downPorts.add(port);
      const dir = portDir(port);
      if (!existsSync(dir)) return;
      for (const s of readdirSync(join(dir, "subsystems"))) unlinkSync(join(dir, "subsystems", s));
      rmdirSync(dir);
    },

    restorePort(port) {
      downPorts.delete(port);
      for (const [nqn, p] of exported) if (p === port && existsSync(subsysDir(nqn))) link(nqn, port);
    },

    dropSubsystem(nqn) {
      removeSubsystem(nqn);
    },

    exportEmpty(nqn, port) {
      makeSubsystem(nqn);
      exported.set(nqn, port);
      link(nqn, port);
    },

    subsystems() {
      return readdirSync(join(nvmet, "subsystems"));
    },

    close() {
      for (const nqn of [...exported.keys()]) unexport(nqn);
      removeEmptyPorts();
      for (const h of ourHosts) {
        try {
          rmdirSync(hostDir(h));
        } catch {
          /* still referenced */
        }
      }
      for (const f of files.values()) rmSync(f, { force: true });
      files.clear();
    },
  };
}
