import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mode } from "../../src/modes/doctor.ts";
import type { ModeContext } from "../../src/modes/types.ts";
import { createRuntime } from "../../src/runtime/index.ts";
import { captureLogger } from "../helpers/log-capture.ts";
import { createFrozenFuse, processesMentioning, type FrozenFuse } from "../helpers/frozen-fuse.ts";
import { makeFakeProc, mountLine, writeMeminfo } from "../helpers/fake-proc.ts";

/** Strict Prometheus text format (0.0.4) reader: throws on anything a scraper would reject. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  if (!text.endsWith("\n")) throw new Error("exposition must end with a newline");
  for (const [i, line] of text.slice(0, -1).split("\n").entries()) {
    const where = `line ${i + 1}: ${line}`;
    if (line === "") continue; // the format ignores empty lines
    if (line.startsWith("# HELP ")) {
      if (!NAME.test(line.split(" ")[2] ?? "")) throw new Error(where);
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      if (!name || !NAME.test(name) || !["gauge", "counter", "untyped", "histogram", "summary"].includes(type ?? ""))
        throw new Error(where);
      if (typed.has(name)) throw new Error(`duplicate TYPE, ${where}`);
      typed.add(name);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? (\S+)$/.exec(
      line,
    );
    if (!m) throw new Error(`malformed sample, ${where}`);
    if (!typed.has(m[1]!)) throw new Error(`sample before its TYPE, ${where}`);
    const v = Number(m[3]);
    if (Number.isNaN(v) && m[3] !== "NaN") throw new Error(`bad value, ${where}`);
    samples.set(m[1]! + (m[2] ?? ""), v);
  }
  return samples;
}

const dirs: string[] = [];
const tmp = (p: string) => {
  const d = mkdtempSync(join(tmpdir(), p));
  dirs.push(d);
  return d;
};
let fuse: FrozenFuse;
let healthyDir: string;
let binDir: string;
const savedPath = process.env.PATH;

beforeAll(async () => {
  fuse = await createFrozenFuse();
  healthyDir = tmp("doctor-ok-");
  binDir = tmp("bin-");
  writeFileSync(
    join(binDir, "nvme"),
    "#!/bin/sh\n[ \"$1\" = version ] && echo 'nvme version 2.9 (test)' && exit 0\nexit 1\n",
  );
  chmodSync(join(binDir, "nvme"), 0o755);
  process.env.PATH = `${binDir}:${savedPath}`;
});
afterAll(async () => {
  process.env.PATH = savedPath;
  await fuse?.cleanup();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A node where every check passes: fabricated /proc, /sys and /dev; real mount points to probe. */
function healthyNode(mountPoints: string[]) {
  const procRoot = tmp("proc-");
  makeFakeProc(procRoot, { mountinfo: mountPoints.map((p, i) => mountLine(i + 1, p)).join("") });
  const sysfsRoot = tmp("sys-");
  mkdirSync(join(sysfsRoot, "module", "nvme_tcp"), { recursive: true });
  const devRoot = tmp("dev-");
  writeFileSync(join(devRoot, "kmsg"), "");
  const hostnqn = join(tmp("etc-"), "hostnqn");
  writeFileSync(hostnqn, "nqn.2014-08.org.nvmexpress:uuid:8f0c1c52-3c2e-4d1b-a7a5-2f6f8c4e9d10\n");
  return {
    procRoot,
    sysfsRoot,
    devRoot,
    hostnqnFile: hostnqn,
    stateDir: tmp("state-"),
    textfile: join(tmp("prom-"), "doctor.prom"),
  };
}

function context(node: ReturnType<typeof healthyNode>, extra: Record<string, unknown> = {}) {
  // Typed loosely on purpose: a hand-made config with durations already in ms.
  const config: any = {
    logLevel: "info",
    logFormat: "json",
    breakerThreshold: 3,
    breakerOpen: 60_000,
    breakerMaxOpen: 1_800_000,
    shutdownGrace: 5000,
    sysfsRoot: node.sysfsRoot,
    procRoot: node.procRoot,
    devRoot: node.devRoot,
    stateDir: node.stateDir,
    kubeletDir: "/var/lib/kubelet",
    protectedNqn: [],
    hostNqnFile: node.hostnqnFile,
    nvmeCommand: "nvme",
    probeTimeout: 1000,
    probeConcurrency: 8,
    stormThreshold: 100,
    checkTimeout: 10_000,
    sampleInterval: 100,
    kernelLogWindow: 3_600_000,
    json: true,
    prometheusTextfile: node.textfile,
    ...extra,
  };
  const cap = captureLogger("info");
  // A hand-made config (durations already in ms), typed as the mode's own: the loader is tested elsewhere.
  const ctx: ModeContext<any> = {
    ...createRuntime(config, { mode: "doctor", version: "test", logToStderr: true }),
    log: cap.log,
  };
  return { ctx, cap };
}

/** Runs the mode with stdout captured. */
async function runMode(ctx: ModeContext<any>): Promise<{ code: number; out: string }> {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((c: string | Uint8Array) => {
    chunks.push(String(c));
    return true;
  }) as typeof process.stdout.write;
  try {
    const code = await mode.run(ctx);
    return { code, out: chunks.join("") };
  } finally {
    process.stdout.write = write;
  }
}

describe("doctor exit codes and Prometheus textfile", () => {
  test("a healthy node exits 0 and writes a valid textfile", async () => {
    const node = healthyNode(["/", healthyDir]);
    const { code, out } = await runMode(context(node).ctx);
    const report = JSON.parse(out);
    expect(
      report.findings.filter((f: { severity: string }) => f.severity === "warning" || f.severity === "critical"),
    ).toEqual([]);
    expect(code).toBe(0);
    const s = parseExposition(readFileSync(node.textfile, "utf8"));
    expect(s.get("total_mountpoints")).toBe(2);
    expect(s.get("dead_mountpoints")).toBe(0);
    expect(s.get("rds_csi_doctor_status")).toBe(0);
    expect(s.get("rds_csi_doctor_memory_pressure")).toBe(0);
  });

  test("a warning (swap over 80 %) exits 1 and shows in its class metric", async () => {
    const node = healthyNode(["/"]);
    writeMeminfo(node.procRoot, { totalKb: 1_000_000, availableKb: 500_000, swapTotalKb: 1000, swapFreeKb: 50 });
    const { code } = await runMode(context(node).ctx);
    expect(code).toBe(1);
    const s = parseExposition(readFileSync(node.textfile, "utf8"));
    expect(s.get("rds_csi_doctor_swap_pressure")).toBe(1);
    expect(s.get("rds_csi_doctor_status")).toBe(1);
  });

  test("a frozen FUSE mount exits 2, named in the report and the textfile; the other mount is fine", async () => {
    fuse.freeze();
    try {
      const node = healthyNode([healthyDir, fuse.mountPoint]);
      const { code, out } = await runMode(context(node).ctx);
      expect(code).toBe(2);
      const report = JSON.parse(out);
      expect(report.mounts.total).toBe(2);
      expect(report.mounts.dead.map((d: { path: string }) => d.path)).toEqual([fuse.mountPoint]);
      const s = parseExposition(readFileSync(node.textfile, "utf8"));
      expect(s.get("dead_mountpoints")).toBe(1);
      expect(s.get(`rds_csi_doctor_dead_mountpoint{path="${fuse.mountPoint}"}`)).toBe(1);
      expect(s.get("rds_csi_doctor_dead_mounts")).toBe(2);
    } finally {
      fuse.thaw();
    }
  });

  test("--pushgateway PUTs the same exposition to this node's group", async () => {
    const got: { method: string; path: string; body: string }[] = [];
    const gw = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        got.push({ method: req.method, path: new URL(req.url).pathname, body: await req.text() });
        return new Response("", { status: 200 });
      },
    });
    try {
      const node = healthyNode(["/"]);
      const { code } = await runMode(
        context(node, { pushgateway: `http://127.0.0.1:${gw.port}/`, nodeId: "node-a" }).ctx,
      );
      expect(code).toBe(0);
      expect(got.map((g) => `${g.method} ${g.path}`)).toEqual(["PUT /metrics/job/rds_csi_doctor/instance/node-a"]);
      expect(parseExposition(got[0]!.body).get("total_mountpoints")).toBe(1);
    } finally {
      gw.stop(true);
    }
  });

  test("an unreachable Pushgateway makes a healthy run exit 3 (not 0, and not the 1 of warnings a unit may accept)", async () => {
    const node = healthyNode(["/"]);
    const { code } = await runMode(context(node, { pushgateway: "http://127.0.0.1:9/" }).ctx);
    expect(code).toBe(3);
  });

  test("the table output (not a TTY) has the summary line and no colour codes", async () => {
    const node = healthyNode(["/"]);
    const { out } = await runMode(context(node, { json: false }).ctx);
    expect(out).toContain("Checked 1 mounts; 0 are dead");
    expect(out).not.toContain("\x1b[");
  });
});

describe("doctor --watch", () => {
  test("one /metrics server: the last round's gauges and the process's own metrics (prom-client), and /healthz", async () => {
    const { createMetrics } = await import("../../src/runtime/metrics.ts");
    const node = healthyNode(["/"]);
    const made = context(node, { watch: 200, metricsAddress: "127.0.0.1:0", json: false });
    const ctx = { ...made.ctx, metrics: createMetrics() };
    const running = mode.run(ctx);
    try {
      const until = Date.now() + 10_000;
      while (Date.now() < until && !made.cap.lines().some((l) => l.msg === "Checked 1 mounts; 0 are dead"))
        await Bun.sleep(50);
      const port = made.cap.lines().find((l) => l.msg === "doctor metrics endpoint listening")!.port;
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      const scraped = parseExposition(await res.text());
      expect(scraped.get("total_mountpoints")).toBe(1);
      expect(scraped.get("rds_csi_doctor_status")).toBe(0);
      expect(scraped.get("rds_csi_stuck_children")).toBe(0);
      expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text()).toBe("ok\n");
    } finally {
      await ctx.shutdown.shutdown("test");
      await running;
    }
  }, 20_000);

  test("rounds log the dead mount, never stack a second probe on it, serve /metrics, and stop on shutdown", async () => {
    fuse.freeze();
    try {
      const node = healthyNode([healthyDir, fuse.mountPoint]);
      const { ctx, cap } = context(node, { watch: 300, metricsAddress: "127.0.0.1:0", json: false });
      const running = mode.run(ctx);
      const seen = new Set<number>();
      const until = Date.now() + 4000;
      while (Date.now() < until) {
        for (const pid of processesMentioning(fuse.mountPoint)) if (pid !== fuse.pid) seen.add(pid);
        await Bun.sleep(50);
      }
      const lines = cap.lines();
      const rounds = lines.filter((l) => l.msg === "Checked 2 mounts; 1 are dead");
      expect(rounds.length).toBeGreaterThanOrEqual(3);
      expect(lines.filter((l) => l.msg === `Mount failed health-check: ${fuse.mountPoint}`).length).toBe(rounds.length);
      expect(seen.size).toBe(1);

      const port = lines.find((l) => l.msg === "doctor metrics endpoint listening")!.port;
      const scraped = parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
      expect(scraped.get("dead_mountpoints")).toBe(1);

      const drained = await ctx.shutdown.shutdown("test");
      expect(await running).toBe(drained);
      // The stuck probe was SIGKILLed on close; give the kernel a moment to reap it.
      const leftover = () => processesMentioning(fuse.mountPoint).filter((p) => p !== fuse.pid);
      for (let i = 0; i < 40 && leftover().length > 0; i++) await Bun.sleep(50);
      expect(leftover()).toEqual([]);
    } finally {
      fuse.thaw();
    }
  }, 20_000);
});
