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

/**
 * Requests are parsed once into typed values (csi/handler.ts's rpc and a valibot schema): no `any`
 * where a request is handled. csi/client.ts is the test and benchmark client, not request handling:
 * its answers are `any` for the tests that pick them apart.
 */
const REQUEST_HANDLING = files.filter(
  (f) =>
    f.startsWith("node/") ||
    (f.startsWith("csi/") && f !== "csi/client.ts") ||
    f.startsWith("controller/") ||
    f.startsWith("modes/csi-") ||
    // The node's Event hooks wrap every handler and read the raw request before it is parsed.
    f === "k8s/node-events.ts",
);
const ANY = [/:\s*any\b/, /\bas\s+any\b/, /<any>/, /\btype\s+\w+(<[^>]*>)?\s*=\s*any\b/];

function anyUses(text: string): string[] {
  return text
    .split("\n")
    .map((line, i) => ({ line: line.replace(/\/\/.*$/, ""), i: i + 1 }))
    .filter(({ line }) => ANY.some((re) => re.test(line)))
    .map(({ line, i }) => `${i}: ${line.trim()}`);
}

test("no `any` in request handling (src/node, src/csi, src/controller, the CSI modes, the node's Event hooks)", () => {
  expect(REQUEST_HANDLING.length).toBeGreaterThan(10);
  const found = REQUEST_HANDLING.flatMap((f) => anyUses(readFileSync(join(SRC, f), "utf8")).map((l) => `${f}:${l}`));
  expect(found).toEqual([]);
});

test("the `any` check sees each form it refuses", () => {
  const src = [
    "function f(req: any) {}",
    "const x = y as any;",
    "const p: Promise<any> = q;",
    "type Req = any;",
    "const ok: unknown = 1; // : any in a comment is fine",
    "const company = 1;",
  ].join("\n");
  expect(anyUses(src)).toEqual([
    "1: function f(req: any) {}",
    "2: const x = y as any;",
    "3: const p: Promise<any> = q;",
    "4: type Req = any;",
  ]);
});

test("CSI handlers are registered without casts", () => {
  const registration = ["modes/csi-node.ts", "modes/csi-controller.ts", ...REQUEST_HANDLING];
  // The one allowed: the embedded .proto's text import, which Bun's types call a module.
  const protoText = /\bprotoText as unknown as string\b/;
  const casts = registration.flatMap((f) =>
    readFileSync(join(SRC, f), "utf8")
      .split("\n")
      .map((line, i) => ({ line, i: i + 1 }))
      .filter(({ line }) => /\bas unknown as\b/.test(line) && !protoText.test(line))
      .map(({ line, i }) => `${f}:${i}: ${line.trim()}`),
  );
  expect(casts).toEqual([]);
});

/**
 * Helpers say what happened and the service that knows the RPC picks the CSI code (node/outcomes.ts,
 * the controller's service): the command, mount, filesystem and sysfs layers, the lock file and gc's
 * loop listing import nothing from runtime/errors.ts that carries a code, only the deadline and
 * message helpers.
 */
const CODE_FREE = files.filter(
  (f) =>
    f.startsWith("mount/") ||
    f.startsWith("fs/") ||
    f.startsWith("sysfs/") ||
    f === "runtime/lockfile.ts" ||
    f === "runtime/command-failed.ts" ||
    f === "gc/loop-devices.ts",
);
const CODE_FREE_IMPORTS = new Set(["DeadlineError", "isDeadlineError", "errorMessage"]);

function errorsImports(text: string): string[] {
  return [...text.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*"[./]*(?:runtime\/)?errors\.ts"/g)].flatMap((m) =>
    m[1]!
      .split(",")
      .map((n) => n.trim().replace(/^type\s+/, ""))
      .filter(Boolean),
  );
}

test("helpers pick no CSI code: mount/, fs/, sysfs/, the lock file and gc's loop listing", () => {
  expect(CODE_FREE.length).toBeGreaterThan(10);
  const found = CODE_FREE.flatMap((f) =>
    errorsImports(readFileSync(join(SRC, f), "utf8"))
      .filter((n) => !CODE_FREE_IMPORTS.has(n))
      .map((n) => `${f}: ${n}`),
  );
  expect(found).toEqual([]);
});

test("the code-picking check sees an import of a code", () => {
  expect(errorsImports('import { DeadlineError, unavailable } from "../runtime/errors.ts";')).toEqual([
    "DeadlineError",
    "unavailable",
  ]);
  expect(errorsImports('import { failedPrecondition } from "./errors.ts";')).toEqual(["failedPrecondition"]);
});
