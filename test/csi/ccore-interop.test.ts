/**
 * The CSI server against gRPC's C core (python3-grpcio), a client implementation that is not the
 * grpc-js every other test uses: the compiled csi-controller (file backend) answers unary calls,
 * errors in trailers, unknown methods and 64 calls at once on one connection.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { protobufjsRoot } from "../../src/csi/protobufjs-package.ts";
import { ensureBinary, killAllSpawned, spawnBinary, waitAnswering, type Daemon } from "../helpers/binary.ts";

const PYTHON = "/usr/bin/python3"; // Debian's, where python3-grpcio is installed (scripts/setup)
const CLIENT = join(import.meta.dir, "ccore-client.py");
const root = protobufjsRoot();

interface Answer {
  code: string;
  details?: string;
  hex?: string;
}
interface Call {
  method: string;
  request?: { type: string; value: object };
  hex?: string;
  repeat?: number;
}

const encode = (type: string, value: object) => {
  const t = root.lookupType(type);
  return Buffer.from(t.encode(t.fromObject(value)).finish()).toString("hex");
};
const decode = (type: string, hex: string) => root.lookupType(type).decode(Buffer.from(hex, "hex")).toJSON();

async function ccore(target: string, calls: Call[]): Promise<Answer[][]> {
  const spec = {
    target,
    calls: calls.map((c) => ({
      method: c.method,
      hex: c.request ? encode(c.request.type, c.request.value) : (c.hex ?? ""),
      repeat: c.repeat ?? 1,
    })),
  };
  const p = Bun.spawn([PYTHON, CLIENT], { stdin: "pipe", stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  p.stdin.write(JSON.stringify(spec));
  await p.stdin.end();
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`C-core client exited ${code}: ${err}`);
  return JSON.parse(out);
}

describe("CSI server with a gRPC C-core client", () => {
  let dir: string;
  let ctl: Daemon;
  let target: string;

  beforeAll(async () => {
    ensureBinary();
    dir = mkdtempSync("/tmp/rds-csi-ccore-");
    const sock = join(dir, "csi.sock");
    target = `unix:${sock}`;
    ctl = spawnBinary([
      "csi-controller",
      "--backend",
      "file",
      "--file-dir",
      join(dir, "volumes"),
      "--state-dir",
      join(dir, "state"),
      "--endpoint",
      `unix://${sock}`,
      "--log-level",
      "warn",
    ]);
    (await waitAnswering(`unix://${sock}`, ctl)).close();
  });

  afterAll(() => {
    killAllSpawned();
    rmSync(dir, { recursive: true, force: true });
  });

  test("answers, refuses with the field named, creates and deletes a volume", async () => {
    const [info, probe, unknown, empty, garbage, create] = await ccore(target, [
      { method: "/csi.v1.Identity/GetPluginInfo" },
      { method: "/csi.v1.Identity/Probe" },
      { method: "/csi.v1.Identity/NoSuchMethod" },
      { method: "/csi.v1.Controller/CreateVolume" },
      { method: "/csi.v1.Controller/CreateVolume", hex: "ffffffff" },
      {
        method: "/csi.v1.Controller/CreateVolume",
        request: {
          type: "csi.v1.CreateVolumeRequest",
          value: {
            name: "pvc-ccore-1",
            capacity_range: { required_bytes: 64 * 1024 * 1024 },
            volume_capabilities: [{ mount: { fs_type: "ext4" }, access_mode: { mode: "SINGLE_NODE_WRITER" } }],
          },
        },
      },
    ]);
    expect(info![0]!.code).toBe("OK");
    expect(decode("csi.v1.GetPluginInfoResponse", info![0]!.hex!)).toMatchObject({ name: "rds.csi.srvlab.io" });
    expect(decode("csi.v1.ProbeResponse", probe![0]!.hex!)).toEqual({ ready: { value: true } });
    expect(unknown![0]!.code).toBe("UNIMPLEMENTED");
    expect(empty![0]!.code).toBe("INVALID_ARGUMENT");
    expect(empty![0]!.details).toContain("name");
    expect(garbage![0]!.code).toBe("INTERNAL");
    expect(create![0]!.code).toBe("OK");
    const volume = decode("csi.v1.CreateVolumeResponse", create![0]!.hex!) as {
      volume: { volume_id: string; capacity_bytes: string };
    };
    expect(volume.volume.volume_id).toMatch(/^pvc-[0-9a-f-]{36}$/);
    expect(Number(volume.volume.capacity_bytes)).toBeGreaterThanOrEqual(64 * 1024 * 1024);

    const [deleted, again] = await ccore(target, [
      {
        method: "/csi.v1.Controller/DeleteVolume",
        request: { type: "csi.v1.DeleteVolumeRequest", value: { volume_id: volume.volume.volume_id } },
      },
      {
        method: "/csi.v1.Controller/DeleteVolume",
        request: { type: "csi.v1.DeleteVolumeRequest", value: { volume_id: volume.volume.volume_id } },
      },
    ]);
    expect(deleted![0]!.code).toBe("OK");
    expect(again![0]!.code).toBe("OK");
  });

  test("64 calls at once on one connection are all answered", async () => {
    const [probes] = await ccore(target, [{ method: "/csi.v1.Identity/Probe", repeat: 64 }]);
    expect(probes).toHaveLength(64);
    expect(probes!.filter((a) => a.code === "OK")).toHaveLength(64);
  });
});
