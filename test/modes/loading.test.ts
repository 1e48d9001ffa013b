/**
 * Each mode loads only its own modules. The build splits at dynamic imports (scripts/build
 * --splitting), so what a mode's file reaches through static imports is what its process maps and
 * evaluates; this follows those edges in the bundler's own module graph.
 */
import { afterAll, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { csiClient } from "../../src/csi/client.ts";

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
  build as unknown as {
    metafile: { inputs: Record<string, { imports: { path: string; kind: string; original?: string }[] }> };
  }
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

test("the module graph was read (sanity: csi-node does reach node:http2 through the CSI server)", () => {
  expect(Object.keys(inputs).length).toBeGreaterThan(100);
  expect(reaches("src/modes/csi-node.ts", "src/csi/grpc-server.ts").length).toBe(1);
  expect(inputs["src/csi/grpc-server.ts"]!.imports.map((i) => i.original)).toContain("node:http2");
});

test("gc and doctor never load gRPC, protobuf or the proto", () => {
  for (const mode of ["src/modes/gc.ts", "src/modes/doctor.ts"]) {
    for (const lib of ["@grpc/grpc-js", "protobufjs", "src/csi/"])
      expect({ mode, lib, found: reaches(mode, lib) }).toEqual({ mode, lib, found: [] });
  }
});

test("no mode loads grpc-js or protobufjs or parses the .proto: the daemons serve gRPC on node:http2 with the generated wire tables", () => {
  // The controller imports the CSI server dynamically (after its checks): the server is checked as its own entry.
  for (const mode of [
    "src/modes/csi-node.ts",
    "src/modes/csi-controller.ts",
    "src/modes/gc.ts",
    "src/modes/doctor.ts",
    "src/csi/server.ts",
  ]) {
    for (const lib of [
      "node_modules/@grpc/",
      "node_modules/protobufjs/",
      "src/csi/protobufjs-package.ts",
      "src/csi/client.ts",
      "src/csi/csi.proto",
    ])
      expect({ mode, lib, found: reaches(mode, lib) }).toEqual({ mode, lib, found: [] });
  }
  // Sanity: the daemons do reach the codec that replaces protobufjs.
  expect(reaches("src/modes/csi-node.ts", "src/csi/wire-csi.ts").length).toBe(1);
  expect(reaches("src/csi/server.ts", "src/csi/wire.ts").length).toBe(1);
});

test("at run time: a CSI server answering a grpc-js client has evaluated neither grpc-js nor protobufjs", async () => {
  // A fresh process (this one has loaded both): both modes' modules and a CSI server; this process's
  // grpc-js client calls it, then the server process lists what it evaluated.
  const socket = `${outdir}/run/csi.sock`;
  const script = `
    await import("${ROOT}/src/modes/csi-node.ts");
    await import("${ROOT}/src/modes/csi-controller.ts");
    const { startCsiServer } = await import("${ROOT}/src/csi/server.ts");
    const { identityHandlers } = await import("${ROOT}/src/csi/identity.ts");
    const { createMetrics } = await import("${ROOT}/src/runtime/metrics.ts");
    const { createShutdownCoordinator } = await import("${ROOT}/src/runtime/shutdown.ts");
    const { createLogger } = await import("${ROOT}/src/runtime/log.ts");
    const log = createLogger({ level: "error", destination: { write() {} } });
    const server = await startCsiServer({
      endpoint: "unix://${socket}",
      handlers: { Identity: identityHandlers({ driverName: "d", version: "1", pluginCapabilities: [], probe: async () => ({ ready: true }) }) },
      shutdown: createShutdownCoordinator({ graceMs: 1000, log }), log, metrics: createMetrics(),
    });
    console.log("listening");
    for await (const _ of console) break;
    await server.close();
    const loaded = Object.keys(require.cache);
    console.log(JSON.stringify({ http2: loaded.includes("node:http2") || loaded.some((k) => k.includes("grpc-server")), found: loaded.filter((k) => /@grpc|protobufjs|proto-loader/.test(k)) }));
  `;
  const p = Bun.spawn([process.execPath, "-e", script], { cwd: ROOT, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const out = p.stdout.getReader();
  let text = "";
  while (!text.includes("listening\n")) {
    const { value, done } = await out.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  const client = csiClient(`unix://${socket}`);
  try {
    expect(await client.identity.Probe({})).toEqual({ ready: { value: true } });
  } finally {
    client.close();
    p.stdin.write("go\n");
    p.stdin.end();
  }
  for (;;) {
    const { value, done } = await out.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  expect({ code: await p.exited, stderr: await new Response(p.stderr).text() }).toEqual({ code: 0, stderr: "" });
  expect(JSON.parse(text.split("\n")[1]!)).toEqual({ http2: true, found: [] });
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
