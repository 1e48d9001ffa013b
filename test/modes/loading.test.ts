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

// grpc-js itself reaches protobufjs through @grpc/proto-loader, but only by a require() inside the
// functions that register the channelz and ORCA services (grpc-js build/src/channelz.js, orca.js:
// "to avoid loading @grpc/proto-loader at startup"), which the driver never calls: the check below
// follows every other edge, and the run-time test after it shows the lazy edge stays untaken.
const LAZY_IN_GRPC = "node_modules/@grpc/proto-loader/";
const reachesEager = (entry: string, needle: string) => {
  const seen = new Set<string>();
  const stack = [entry];
  while (stack.length) {
    const k = stack.pop()!;
    if (seen.has(k) || !inputs[k] || k.includes(LAZY_IN_GRPC)) continue;
    seen.add(k);
    for (const i of inputs[k]!.imports) if (i.kind !== "dynamic-import") stack.push(i.path);
  }
  return [...seen].filter((m) => m.includes(needle));
};

test("no mode loads protobufjs or parses the .proto: the CSI daemons use the generated wire tables", () => {
  // The controller imports the CSI server dynamically (after its checks): the server is checked as its own entry.
  for (const mode of [
    "src/modes/csi-node.ts",
    "src/modes/csi-controller.ts",
    "src/modes/gc.ts",
    "src/modes/doctor.ts",
    "src/csi/server.ts",
  ]) {
    for (const lib of ["node_modules/protobufjs/", "src/csi/protobufjs-package.ts", "src/csi/csi.proto"])
      expect({ mode, lib, found: reachesEager(mode, lib) }).toEqual({ mode, lib, found: [] });
  }
  // Sanity: the lazy edge is there (else the exception above hides nothing), and the daemons reach the codec.
  expect(reaches("src/modes/csi-node.ts", "node_modules/protobufjs/").length).toBeGreaterThan(0);
  expect(reachesEager("src/modes/csi-node.ts", "src/csi/wire-csi.ts").length).toBe(1);
  expect(reachesEager("src/csi/server.ts", "src/csi/wire.ts").length).toBe(1);
});

test("at run time: a daemon's modules serving RPCs over a socket never evaluate protobufjs", async () => {
  // A fresh process (this one has protobufjs loaded by the bundler API): both modes' modules, a CSI
  // server, and a grpc-js client on the same generated codec calling it; then what was evaluated.
  const socket = `${outdir}/run/csi.sock`;
  const script = `
    await import("${ROOT}/src/modes/csi-node.ts");
    await import("${ROOT}/src/modes/csi-controller.ts");
    const grpc = await import("@grpc/grpc-js");
    const { startCsiServer } = await import("${ROOT}/src/csi/server.ts");
    const { csiPackage } = await import("${ROOT}/src/csi/proto.ts");
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
    const client = new (csiPackage().Identity)("unix:${socket}", grpc.credentials.createInsecure());
    const res = await new Promise((ok, fail) => client.Probe({}, (e, r) => (e ? fail(e) : ok(r))));
    client.close();
    await server.close();
    const loaded = Object.keys(require.cache);
    console.log(JSON.stringify({ res, grpc: loaded.some((k) => k.includes("@grpc/grpc-js")), protobufjs: loaded.filter((k) => /protobufjs|proto-loader/.test(k)) }));
  `;
  const p = Bun.spawnSync([process.execPath, "-e", script], { cwd: ROOT, stderr: "pipe" });
  expect({ code: p.exitCode, stderr: p.stderr.toString() }).toEqual({ code: 0, stderr: "" });
  expect(JSON.parse(p.stdout.toString())).toEqual({ res: { ready: { value: true } }, grpc: true, protobufjs: [] });
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
