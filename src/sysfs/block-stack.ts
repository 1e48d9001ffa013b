import { join } from "node:path";
import { listEntries, readAttribute } from "./attributes.ts";

/**
 * What the kernel has stacked on a block device, read from /sys/block: partitions are entries of
 * the disk's directory named after it (`sda1`, `nvme0n1p1`), and every device built on top of a disk
 * or partition (LVM, dm-crypt, md) is an entry of its `holders/`. Callers scan under one deadline; a
 * device that vanishes mid-walk contributes nothing.
 */

/** Partition names of a disk (its `/sys/block/<name>/<name>…` entries). */
export async function partitionsOf(sysfsRoot: string, name: string): Promise<string[]> {
  return (await listEntries(join(sysfsRoot, "block", name))).filter((e) => e.startsWith(name) && e !== name);
}

/**
 * Device numbers ("major:minor") on top of a block device: its partitions and, recursively, whatever
 * holds it or its partitions, with their partitions. The device's own number is not included.
 */
export async function stackedDevs(sysfsRoot: string, name: string): Promise<Set<string>> {
  const out = new Set<string>();
  const seen = new Set<string>();
  const walk = async (disk: string): Promise<void> => {
    // md and LVM over several disks are reached once per member: walk each device once.
    if (seen.has(disk)) return;
    seen.add(disk);
    const dir = join(sysfsRoot, "block", disk);
    for (const part of await partitionsOf(sysfsRoot, disk)) {
      const dev = await readAttribute(join(dir, part, "dev"));
      if (dev) out.add(dev);
      for (const h of await listEntries(join(dir, part, "holders"))) await holder(h);
    }
    for (const h of await listEntries(join(dir, "holders"))) await holder(h);
  };
  const holder = async (h: string) => {
    const dev = await readAttribute(join(sysfsRoot, "block", h, "dev"));
    if (dev) out.add(dev);
    await walk(h);
  };
  await walk(name);
  return out;
}
