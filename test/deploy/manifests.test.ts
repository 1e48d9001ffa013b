import { describe, expect, test } from "bun:test";
import type { OptionSpec } from "../../src/config/option-spec.ts";
import { readFileSync, readdirSync } from "node:fs";
import { join, posix, resolve } from "node:path";
import * as v from "valibot";
import { parseAllDocuments } from "yaml";
import { DEFAULTS } from "../../src/config/defaults.ts";
import { envName } from "../../src/config/load.ts";
import { ProtectedPatternSchema, nqnPrefixProblem, patternOverlapsPrefix } from "../../src/config/nqn.ts";
import { COMMON_OPTIONS } from "../../src/config/options.ts";
import { parseDurationMs } from "../../src/config/schemas.ts";
import { loadModes } from "../../src/modes/index.ts";

const MODES = await loadModes();

const ROOT = resolve(import.meta.dir, "../..");
const DEPLOY = join(ROOT, "deploy");
const SOCKET_PATH = DEFAULTS.endpoint.replace(/^unix:\/\//, "");

// Loose shapes of the Kubernetes objects; the assertions below are what enforce them.
type Obj = Record<string, any>;
interface Doc {
  file: string;
  obj: Obj;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.ya?ml$/.test(e.name))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

function load(): Doc[] {
  const docs: Doc[] = [];
  for (const file of yamlFiles(DEPLOY)) {
    for (const d of parseAllDocuments(readFileSync(file, "utf8"))) {
      if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
      const obj = d.toJS() as Obj | null;
      if (obj) docs.push({ file: file.slice(ROOT.length + 1), obj });
    }
  }
  return docs;
}

const docs = load();
const objects = docs.filter((d) => d.obj.kind !== "Kustomization").map((d) => d.obj);
const one = (kind: string, name?: string): Obj => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ""} in deploy/, found ${found.length}`);
  return found[0]!;
};
const container = (workload: Obj, name: string): Obj => {
  const c = workload.spec.template.spec.containers.find((x: Obj) => x.name === name);
  if (!c) throw new Error(`${workload.metadata.name} has no container ${name}`);
  return c;
};
const envValue = (c: Obj, name: string): Obj | undefined => (c.env ?? []).find((e: Obj) => e.name === name);
const argValue = (c: Obj, flag: string): string | undefined =>
  (c.args as string[] | undefined)?.find((a) => a.startsWith(`--${flag}=`))?.slice(flag.length + 3);

/** Where a path inside a container lives: the host path through a hostPath volume, or "<volume>:<path>" for others. */
function resolveMount(workload: Obj, c: Obj, path: string): string {
  const mounts = (c.volumeMounts ?? []) as Obj[];
  const m = mounts
    .filter((x) => path === x.mountPath || path.startsWith(x.mountPath.replace(/\/$/, "") + "/"))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  if (!m) return `unmounted:${path}`;
  const rest = path.slice(m.mountPath.length).replace(/^\//, "");
  const vol = (workload.spec.template.spec.volumes as Obj[]).find((x) => x.name === m.name);
  if (!vol) throw new Error(`${workload.metadata.name}/${c.name}: mount ${m.name} has no volume`);
  return vol.hostPath ? posix.join(vol.hostPath.path, rest) : `${vol.name}:${posix.join("/", rest)}`;
}

/** The grace the binary will use in this container: its env, else the binary's default. */
function graceSeconds(c: Obj): number {
  const env = envValue(c, "RDS_CSI_SHUTDOWN_GRACE");
  if (!env) return DEFAULTS.shutdownGraceSeconds;
  const ms = parseDurationMs(env.value);
  if (ms === undefined) throw new Error(`${c.name}: RDS_CSI_SHUTDOWN_GRACE ${env.value} is not a duration`);
  return ms / 1000;
}

describe("deploy/ parses", () => {
  test("every YAML document parses and names apiVersion, kind and metadata.name", () => {
    expect(yamlFiles(DEPLOY).length).toBeGreaterThanOrEqual(10);
    for (const { file, obj } of docs) {
      if (obj.kind === "Kustomization") continue;
      expect({ file, ok: Boolean(obj.apiVersion && obj.kind && obj.metadata?.name) }).toEqual({ file, ok: true });
    }
  });

  test("the kustomization lists every manifest in deploy/ (examples are applied by hand)", () => {
    const k = docs.find((d) => d.obj.kind === "Kustomization")!.obj;
    const top = readdirSync(DEPLOY)
      .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
      .sort();
    expect([...k.resources].sort()).toEqual(top);
  });
});

describe("driver name and socket path agree with the binary's defaults", () => {
  test("CSIDriver", () => {
    const d = one("CSIDriver");
    expect(d.metadata.name).toBe(DEFAULTS.driverName);
    expect(d.spec).toMatchObject({ attachRequired: true, podInfoOnMount: true, fsGroupPolicy: "File" });
  });

  test("StorageClass and VolumeSnapshotClass examples", () => {
    expect(one("StorageClass").provisioner).toBe(DEFAULTS.driverName);
    expect(one("VolumeSnapshotClass").driver).toBe(DEFAULTS.driverName);
  });

  for (const name of ["rds-csi-node", "rds-csi-node-registrar"]) {
    test(`${name}: the registrar registers, and the probe watches, the socket the node plugin serves`, () => {
      const ds = one("DaemonSet", name);
      const registrar = container(ds, "node-driver-registrar");
      expect(argValue(registrar, "kubelet-registration-path")).toBe(SOCKET_PATH);
      expect(resolveMount(ds, registrar, argValue(registrar, "csi-address")!)).toBe(SOCKET_PATH);
      const probe = container(ds, "liveness-probe");
      expect(resolveMount(ds, probe, argValue(probe, "csi-address")!)).toBe(SOCKET_PATH);
      const registration = resolveMount(ds, registrar, "/registration");
      expect(registration).toBe(posix.join(DEFAULTS.kubeletDir, "plugins_registry"));
    });
  }

  test("rds-csi-node: the plugin's endpoint (default or env) is the same host socket", () => {
    const ds = one("DaemonSet", "rds-csi-node");
    const node = container(ds, "rds-csi");
    expect(node.args).toEqual(["csi-node"]);
    const endpoint = envValue(node, "RDS_CSI_ENDPOINT")?.value ?? DEFAULTS.endpoint;
    expect(resolveMount(ds, node, endpoint.replace(/^unix:\/\//, ""))).toBe(SOCKET_PATH);
    expect(envValue(node, "RDS_CSI_DRIVER_NAME")?.value ?? DEFAULTS.driverName).toBe(DEFAULTS.driverName);
  });

  test("rds-csi-controller: every sidecar talks to the socket the controller serves", () => {
    const dep = one("Deployment", "rds-csi-controller");
    const ctrl = container(dep, "rds-csi");
    expect(ctrl.args).toEqual(["csi-controller"]);
    const endpoint = envValue(ctrl, "RDS_CSI_ENDPOINT")?.value ?? DEFAULTS.endpoint;
    const served = resolveMount(dep, ctrl, endpoint.replace(/^unix:\/\//, ""));
    const sidecars = ["csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "liveness-probe"];
    expect(dep.spec.template.spec.containers.map((c: Obj) => c.name).sort()).toEqual(["rds-csi", ...sidecars].sort());
    for (const s of sidecars) {
      const c = container(dep, s);
      expect({ sidecar: s, socket: resolveMount(dep, c, argValue(c, "csi-address")!) }).toEqual({
        sidecar: s,
        socket: served,
      });
    }
  });
});

describe("node plugin's host access", () => {
  const ds = one("DaemonSet", "rds-csi-node");
  const pod = ds.spec.template.spec;
  const node = container(ds, "rds-csi");
  const mountAt = (path: string) => (node.volumeMounts as Obj[]).find((m) => m.mountPath === path);

  test("privileged, host network", () => {
    expect(node.securityContext?.privileged).toBe(true);
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe("ClusterFirstWithHostNet");
  });

  test("kubelet dir at its host path with Bidirectional propagation", () => {
    expect(mountAt(DEFAULTS.kubeletDir)?.mountPropagation).toBe("Bidirectional");
    expect(resolveMount(ds, node, DEFAULTS.kubeletDir)).toBe(DEFAULTS.kubeletDir);
  });

  test("/dev, /sys, /etc/nvme (read-only) and the state dir come from the host", () => {
    expect(resolveMount(ds, node, "/dev")).toBe("/dev");
    expect(resolveMount(ds, node, "/sys")).toBe("/sys");
    expect(resolveMount(ds, node, "/etc/nvme")).toBe("/etc/nvme");
    expect(mountAt("/etc/nvme")?.readOnly).toBe(true);
    const stateDir = envValue(node, "RDS_CSI_STATE_DIR")?.value ?? DEFAULTS.stateDir;
    expect(resolveMount(ds, node, stateDir)).toBe(DEFAULTS.stateDir);
    expect(mountAt(stateDir)?.readOnly ?? false).toBe(false);
  });
});

describe("shutdown grace", () => {
  for (const [kind, name] of [
    ["DaemonSet", "rds-csi-node"],
    ["Deployment", "rds-csi-controller"],
  ] as const) {
    test(`${name}: terminationGracePeriodSeconds is above the binary's shutdown grace`, () => {
      const w = one(kind, name);
      const grace = graceSeconds(container(w, "rds-csi"));
      expect(grace).toBe(DEFAULTS.shutdownGraceSeconds);
      expect(w.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(grace);
    });
  }
});

describe("configuration from the environment", () => {
  const config = one("ConfigMap", "rds-csi-config");

  test("the ConfigMap's NQN prefix and protected patterns pass the binary's rules and do not overlap", () => {
    const prefix: string = config.data["nqn-prefix"];
    expect(nqnPrefixProblem(prefix)).toBeNull();
    const patterns = String(config.data["protected-nqns"])
      .split(",")
      .map((s) => s.trim());
    expect(patterns.length).toBeGreaterThan(0);
    for (const p of patterns) {
      expect(v.safeParse(ProtectedPatternSchema, p).success).toBe(true);
      expect({ p, overlaps: patternOverlapsPrefix(p, prefix) }).toEqual({ p, overlaps: false });
    }
  });

  test("both workloads take RDS_CSI_NQN_PREFIX from the ConfigMap", () => {
    for (const w of [one("DaemonSet", "rds-csi-node"), one("Deployment", "rds-csi-controller")]) {
      const env = envValue(container(w, "rds-csi"), "RDS_CSI_NQN_PREFIX");
      expect(env?.valueFrom?.configMapKeyRef).toMatchObject({ name: "rds-csi-config", key: "nqn-prefix" });
      expect(env?.valueFrom?.configMapKeyRef?.optional ?? false).toBe(false);
    }
  });

  test("every referenced ConfigMap and Secret key exists in deploy/", () => {
    const refs: Obj[] = objects
      .filter((o) => o.spec?.template?.spec?.containers)
      .flatMap((o) => o.spec.template.spec.containers.flatMap((c: Obj) => (c.env ?? []) as Obj[]))
      .map((e) => e.valueFrom?.configMapKeyRef ?? e.valueFrom?.secretKeyRef)
      .filter(Boolean);
    expect(refs.length).toBeGreaterThanOrEqual(6);
    for (const r of refs) {
      const src = objects.find((o) => (o.kind === "ConfigMap" || o.kind === "Secret") && o.metadata.name === r.name);
      const keys = Object.keys({ ...src?.data, ...src?.stringData });
      expect({ ref: `${r.name}/${r.key}`, found: keys.includes(r.key) }).toEqual({
        ref: `${r.name}/${r.key}`,
        found: true,
      });
    }
  });

  const byMode = new Map(MODES.map((m) => [m.command, m.options]));
  const knownEnv = (mode: string) =>
    new Set([...COMMON_OPTIONS, ...(byMode.get(mode) ?? [])].map((o) => envName(o.name)));

  for (const [kind, name] of [
    ["DaemonSet", "rds-csi-node"],
    ["Deployment", "rds-csi-controller"],
  ] as const) {
    test(`${name}: its mode is a mode of the binary and every RDS_CSI_* variable is one of its options`, () => {
      const c = container(one(kind, name), "rds-csi");
      const mode = c.args[0] as string;
      expect({ mode, registered: byMode.has(mode) }).toEqual({ mode, registered: true });
      const names = (c.env as Obj[]).map((e) => e.name as string).filter((n) => n.startsWith("RDS_CSI_"));
      expect(names.filter((n) => !knownEnv(mode).has(n))).toEqual([]);
    });
  }

  /** The env value as the binary would see it: literal, or the ConfigMap's; secrets are not checked. */
  const envLiteral = (e: Obj): string | undefined => {
    if (typeof e.value === "string") return e.value;
    const ref = e.valueFrom?.configMapKeyRef;
    return ref
      ? objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === ref.name)?.data?.[ref.key]
      : undefined;
  };

  for (const [kind, name] of [
    ["DaemonSet", "rds-csi-node"],
    ["Deployment", "rds-csi-controller"],
  ] as const) {
    test(`${name}: every RDS_CSI_* value passes the binary's own validation of that option`, () => {
      const c = container(one(kind, name), "rds-csi");
      const specs: readonly OptionSpec[] = [...COMMON_OPTIONS, ...(byMode.get(c.args[0]) ?? [])];
      const problems: string[] = [];
      let checked = 0;
      for (const e of c.env as Obj[]) {
        const spec = specs.find((o) => envName(o.name) === e.name);
        const raw = envLiteral(e);
        if (!spec || raw === undefined) continue;
        const value =
          spec.type === "number"
            ? Number(raw)
            : spec.type === "array"
              ? raw.split(",").map((x) => x.trim())
              : spec.type === "boolean"
                ? raw === "true"
                : raw;
        checked++;
        if (spec.choices && !spec.choices.includes(String(value)))
          problems.push(`${e.name}=${raw}: not one of ${spec.choices.join("|")}`);
        if (spec.schema) {
          const r = v.safeParse(spec.schema, value);
          if (!r.success) problems.push(`${e.name}=${raw}: ${r.issues[0].message}`);
        }
      }
      expect(problems).toEqual([]);
      expect(checked).toBeGreaterThanOrEqual(4);
    });
  }

  test("nix/module.nix: every RDS_CSI_* variable it sets is a common option of the binary", () => {
    const module = readFileSync(join(ROOT, "nix/module.nix"), "utf8");
    const names = [...new Set(module.match(/RDS_CSI_[A-Z_]+(?= =)/g) ?? [])];
    expect(names.length).toBeGreaterThanOrEqual(8);
    const common = new Set(COMMON_OPTIONS.map((o) => envName(o.name)));
    expect(names.filter((n) => !common.has(n))).toEqual([]);
  });
});

describe("Dockerfile", () => {
  const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  const runtime = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));

  test("runtime stage: rds-csi as entrypoint, the node's tools installed", () => {
    expect(runtime).toContain('ENTRYPOINT ["/usr/local/bin/rds-csi"]');
    expect(runtime).toContain("COPY --from=build /src/dist/rds-csi /usr/local/bin/rds-csi");
    const install = runtime.match(/apt-get install[^\n]*/)?.[0] ?? "";
    for (const pkg of ["nvme-cli", "e2fsprogs", "xfsprogs", "util-linux"]) expect(install).toContain(` ${pkg}`);
  });

  test("build stage uses the repository's build script", () => {
    expect(readFileSync(join(ROOT, "package.json"), "utf8")).toContain('"build": "scripts/build"');
    expect(dockerfile).toContain("RUN npm run build");
  });
});
