/**
 * Data flows one way (DESIGN.md): a mode wires services together; nothing below the modes imports
 * them. Read from the source's own import statements.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

const SRC = join(import.meta.dir, "..", "src");
const files = readdirSync(SRC, { recursive: true })
  .map(String)
  .filter((f) => f.endsWith(".ts"));
const importsOf = (file: string) =>
  [
    ...readFileSync(join(SRC, file), "utf8").matchAll(
      /(?:^|\n)\s*(?:import|export)[^;]*?from\s+"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g,
    ),
  ]
    .map((m) => m[1] ?? m[2]!)
    .filter((p) => p.startsWith("."));

test("no module outside src/modes, src/cli.ts and src/main.ts imports from src/modes", () => {
  const allowed = (f: string) => f.startsWith("modes/") || f === "cli.ts" || f === "main.ts";
  const violations = files
    .filter((f) => !allowed(f))
    .flatMap((f) =>
      importsOf(f)
        .map((p) => relative(SRC, join(SRC, f, "..", p)))
        .filter((target) => target.startsWith("modes/"))
        .map((t) => `${f} → ${t}`),
    );
  expect(violations).toEqual([]);
});

test("the check sees imports at all (a mode file does import from runtime/)", () => {
  expect(importsOf("modes/csi-node.ts").some((p) => p.includes("runtime/"))).toBe(true);
});

test("config values are typed by the mode's options: no cast of a config value anywhere in src", () => {
  const casts = files.flatMap((f) =>
    readFileSync(join(SRC, f), "utf8")
      .split("\n")
      .map((line, i) => ({ f, i: i + 1, line }))
      .filter(
        ({ line }) =>
          /\b(ctx\.config|cfg|config)\.[A-Za-z]+\)?\s+as\s/.test(line) || /\(\s*(c|cfg)\.[A-Za-z]+\s+as\s/.test(line),
      )
      .map(({ f, i, line }) => `${f}:${i}: ${line.trim()}`),
  );
  expect(casts).toEqual([]);
});
