import type { ItemResult } from "./execute.ts";
import { describeAction, type GcPlan } from "./types.ts";

/** Output of `rds-csi gc`: a table for people, one JSON document for machines. */

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  // The last column is free text: never pad it.
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

export interface Notes {
  /** Warnings such as an ignored or stale lock. */
  warnings: string[];
}

export function renderPlanText(p: GcPlan, opts: { verbose: boolean; notes: Notes }): string {
  let out = opts.notes.warnings.map((w) => `warning: ${w}\n`).join("");
  if (p.candidates.length === 0) out += "nothing to collect\n";
  else {
    out += table(
      ["KIND", "ID", "WOULD", "WHY"],
      p.candidates.map((c) => [c.kind, c.id, describeAction(c.action), c.reason]),
    );
    out += `\n${p.candidates.length} candidate(s); run with --force to collect them\n`;
  }
  if (opts.verbose && p.skipped.length) {
    out +=
      `\nskipped (left alone):\n` +
      table(
        ["KIND", "ID", "WHY"],
        p.skipped.map((s) => [s.kind, s.id, s.reason]),
      );
  } else if (p.skipped.length) {
    out += `${p.skipped.length} item(s) left alone (--verbose lists them)\n`;
  }
  return out;
}

export function renderResultsText(results: ItemResult[], p: GcPlan, opts: { verbose: boolean; notes: Notes }): string {
  let out = opts.notes.warnings.map((w) => `warning: ${w}\n`).join("");
  if (results.length === 0) out += "nothing to collect\n";
  else {
    out += table(
      ["RESULT", "KIND", "ID", "ACTION", "DETAIL"],
      results.map((r) => [r.status, r.kind, r.id, r.action, r.detail || `${r.durationMs} ms`]),
    );
    const count = (s: ItemResult["status"]) => results.filter((r) => r.status === s).length;
    out += `\n${count("done")} done, ${count("failed")} failed, ${count("timed-out")} timed out, ${count("skipped")} skipped, ${count("not-run")} not run\n`;
  }
  if (opts.verbose && p.skipped.length)
    out +=
      `\nskipped by the plan (left alone):\n` +
      table(
        ["KIND", "ID", "WHY"],
        p.skipped.map((s) => [s.kind, s.id, s.reason]),
      );
  return out;
}

export function renderJson(p: GcPlan, results: ItemResult[] | null, notes: Notes): string {
  return (
    JSON.stringify(
      {
        mode: results ? "force" : "plan",
        warnings: notes.warnings,
        candidates: p.candidates.map((c) => ({ ...c, would: describeAction(c.action) })),
        ...(results ? { results } : {}),
        // Machines get the skipped list always; it costs nothing to ignore.
        skipped: p.skipped,
      },
      null,
      2,
    ) + "\n"
  );
}

/** One overwritten line on a terminal; nothing at all when stderr is not a TTY. */
export function progressLine(stream: { isTTY?: boolean; write(s: string): unknown }) {
  return (done: number, total: number, next: { kind: string; id: string } | null) => {
    if (!stream.isTTY) return;
    if (!next) {
      stream.write("\r\x1b[2K");
      return;
    }
    stream.write(`\r\x1b[2K[${done + 1}/${total}] ${next.kind} ${next.id}`.slice(0, 200));
  };
}
