import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** Unmounts what is mounted under `dir` (deepest first) and detaches loop devices backed by files in it. */
export function releaseUnder(dir: string): void {
  const mine = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((mp) => mp.startsWith(`${dir}/`))
    .reverse();
  for (const mp of mine) spawnSync("umount", ["-l", mp], { stdio: "ignore" });
  const loops = execFileSync("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"], { encoding: "utf8" });
  for (const line of loops.split("\n")) {
    const [dev, file] = line.trim().split(/\s+/);
    if (dev && file?.startsWith(`${dir}/`)) spawnSync("losetup", ["-d", dev], { stdio: "ignore" });
  }
}
