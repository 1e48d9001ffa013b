/**
 * Each mode loads only its own modules. The build splits at dynamic imports (scripts/build
 * --splitting), so what a mode's file reaches through static imports is what its process maps and
 * evaluates; this follows those edges in the bundler's own module graph.
 */
import { afterAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";

const ROOT = `${import.meta.dir}/../..`;
const outdir = `/tmp/rds-csi-loading-test-${process.pid}`;
const build = await Bun.build({
  entrypoints: [`${ROOT}/src/main.ts`],
  target: "bun",
  metafile: true,
  splitting: true,
  outdir,
});
afterAll(() => rmSync(outdir, { recursive: true, force: true }));
const inputs = (
  build as unknown as { metafile: { inputs: Record<string, { imports: { path: string; kind: string }[] }> } }
).metafile.inputs;

/** Every module reachable from `entry` without crossing a dynamic import(). */
function staticClosure(entry: string): string[] {
  const seen = new Set<string>();
  const stack = [entry];
  while (stack.length) {
    const k = stack.pop()!;
    if (seen.has(k) || !inputs[k]) continue;
    seen.add(k);
    for (const i of inputs[k]!.imports) if (i.kind !== "dynamic-import") stack.push(i.path);
  }
  return [...seen];
}
const reaches = (entry: string, needle: string) => staticClosure(entry).filter((m) => m.includes(needle));

test("the module graph was read (sanity: csi-node does reach grpc-js)", () => {
  expect(Object.keys(inputs).length).toBeGreaterThan(100);
  expect(reaches("src/modes/csi-node.ts", "node_modules/@grpc/grpc-js/").length).toBeGreaterThan(0);
});

test("gc and doctor never load gRPC, protobuf or the proto", () => {
  for (const mode of ["src/modes/gc.ts", "src/modes/doctor.ts"]) {
    for (const lib of ["@grpc/grpc-js", "protobufjs", "src/csi/"])
      expect({ mode, lib, found: reaches(mode, lib) }).toEqual({ mode, lib, found: [] });
  }
});

test("csi-node never loads the RouterOS client or the file backend", () => {
  for (const lib of ["src/backends/routeros/", "src/backends/file/"])
    expect(reaches("src/modes/csi-node.ts", lib)).toEqual([]);
});

test("prom-client loads only where /metrics is served (dynamically), never with a mode or the CLI", () => {
  for (const entry of [
    "src/main.ts",
    "src/cli.ts",
    "src/modes/csi-node.ts",
    "src/modes/csi-controller.ts",
    "src/modes/doctor.ts",
    "src/modes/gc.ts",
  ]) {
    expect({ entry, found: reaches(entry, "prom-client") }).toEqual({ entry, found: [] });
  }
});

test("the CLI reaches no mode's code statically: modes/index.ts imports each one dynamically", () => {
  const cli = staticClosure("src/cli.ts");
  expect(cli.filter((m) => /src\/modes\/(csi-node|csi-controller|gc|doctor|breaker)\.ts$/.test(m))).toEqual([]);
  expect(inputs["src/modes/index.ts"]!.imports.filter((i) => i.kind === "dynamic-import").length).toBe(6);
});
