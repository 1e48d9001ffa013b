/**
 * What a memory limit charges a process: each measured process starts in a fresh memory cgroup of
 * its own, made below the cgroup this bench runs in (so its charges still count there), and is
 * read as the kubelet reads a container: the charge (cgroup v2 memory.current, v1
 * memory.usage_in_bytes) and the working set (charge − inactive_file), the figure kubelet
 * evictions and `kubectl top` use. A cgroup is charged for anonymous memory, kernel memory and the
 * page cache it brought in itself: the pages of an executable that another cgroup already had in
 * the cache are mapped but not charged. Cgroups are removed after each process, at exit and on a
 * signal, and an interrupted run's leftovers are removed by the next run.
 * The memory controller may sit on either hierarchy: on a hybrid host (systemd's default before
 * cgroup v2 only) cgroup2 is mounted without it and v1's memory hierarchy is used, which kubelet on
 * such a host reads the same way (usage_in_bytes − total_inactive_file).
 */
import { mkdirSync, readdirSync, readFileSync, rmdirSync } from "node:fs";

const PREFIX = "rds-csi-bench-";

export interface Memcg {
  /** "v2" or "v1": which hierarchy has the memory controller here. */
  version: "v1" | "v2";
  dir: string;
  /** A shell prefix that moves the shell into the cgroup before it execs the command. */
  wrap(cmd: string[]): string[];
  read(): { charged: number; workingSet: number };
  remove(): void;
}

interface Hierarchy {
  version: "v1" | "v2";
  parent: string;
}

/** Where this process's memory cgroup lives and whether it has the memory controller, or why not. */
export function findHierarchy(): Hierarchy | { unavailable: string } {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  const own = readFileSync("/proc/self/cgroup", "utf8").split("\n");
  const v2 = mounts.map((l) => l.split(" ")).find((f) => f[f.indexOf("-") + 1] === "cgroup2")?.[4];
  const v2Path = own.find((l) => l.startsWith("0::"))?.slice(3);
  if (v2 && v2Path !== undefined) {
    const parent = `${v2}${v2Path === "/" ? "" : v2Path}`;
    const controllers = readFileSync(`${parent}/cgroup.controllers`, "utf8").split(/\s+/);
    if (controllers.includes("memory")) return { version: "v2", parent };
  }
  const v1 = mounts
    .map((l) => l.split(" "))
    .find(
      (f) =>
        f[f.indexOf("-") + 1] === "cgroup" &&
        f
          .slice(f.indexOf("-") + 3)
          .join(" ")
          .includes("memory"),
    )?.[4];
  const v1Path = own.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l))?.split(":")[2];
  if (v1 && v1Path !== undefined) return { version: "v1", parent: `${v1}${v1Path === "/" ? "" : v1Path}` };
  return {
    unavailable: `no memory controller: cgroup2 at ${v2 ?? "(none)"} offers ${v2 ? readFileSync(`${v2}/cgroup.controllers`, "utf8").trim() || "nothing" : "-"}, and no v1 memory hierarchy`,
  };
}

/** Removes the cgroups of earlier runs that are empty now (their processes are gone). */
export function removeLeftovers(h: Hierarchy): void {
  for (const name of readdirSync(h.parent)) {
    if (!name.startsWith(PREFIX)) continue;
    try {
      rmdirSync(`${h.parent}/${name}`);
    } catch {
      /* still in use: a run in progress */
    }
  }
}

const created = new Set<string>();
/** rmdir, retried for a second: a process killed a moment ago leaves its cgroup once the kernel has finished its exit. */
function removeDir(dir: string): void {
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(dir);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") break;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
  created.delete(dir);
}
let hooked = false;

export function createMemcg(h: Hierarchy, label: string): Memcg {
  if (!hooked) {
    hooked = true;
    process.on("exit", () => [...created].forEach(removeDir));
  }
  const dir = `${h.parent}/${PREFIX}${process.pid}-${label.replace(/\W+/g, "-")}-${created.size}`;
  mkdirSync(dir);
  created.add(dir);
  const stat = () =>
    Object.fromEntries(
      readFileSync(`${dir}/memory.stat`, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split(" ") as [string, string]),
    );
  return {
    version: h.version,
    dir,
    wrap: (cmd) => ["/bin/sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir, ...cmd],
    read() {
      const charged = Number(
        readFileSync(`${dir}/${h.version === "v2" ? "memory.current" : "memory.usage_in_bytes"}`, "utf8"),
      );
      const s = stat();
      const inactiveFile = Number(h.version === "v2" ? s.inactive_file : s.total_inactive_file);
      return { charged, workingSet: charged - inactiveFile };
    },
    remove: () => removeDir(dir),
  };
}

/** Checks that a cgroup can be made here (root is not enough where cgroupfs is read-only). */
export function probeWritable(h: Hierarchy): string | undefined {
  try {
    createMemcg(h, "probe").remove();
    return undefined;
  } catch (e) {
    return `cannot create a memory cgroup under ${h.parent}: ${(e as Error).message}`;
  }
}
