/**
 * Per-RPC durations of a VM suite run (the rpc.jsonl that test/vm/harness.ts writes to the results
 * share): count, median and max per RPC name, variants like "NodeExpandVolume(no AEN)" kept apart.
 * Usage: bun scripts/vm/rpc-summary.ts <results dir>
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: bun scripts/vm/rpc-summary.ts <results dir>");
  process.exit(2);
}
const file = join(dir, "rpc.jsonl");
if (!existsSync(file)) {
  console.error(`no ${file}: the suite logged no RPC`);
  process.exit(0);
}
const rows = readFileSync(file, "utf8")
  .split("\n")
  .filter(Boolean)
  .map((l) => JSON.parse(l) as { rpc: string; ms: number; code: number });
const by = new Map<string, number[]>();
for (const r of rows) by.set(r.rpc, [...(by.get(r.rpc) ?? []), r.ms]);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};
const lines = [...by]
  .sort(([a], [b]) => a.localeCompare(b))
  .map(
    ([rpc, ms]) =>
      `${rpc.padEnd(40)} ${String(ms.length).padStart(3)}  ${String(median(ms)).padStart(7)}  ${String(Math.max(...ms)).padStart(7)}`,
  );
console.log(`${"RPC (under TCG)".padEnd(40)}   n  median ms   max ms\n${lines.join("\n")}`);
