import { readFileSync } from "node:fs";
import * as v from "valibot";
import type { Backend, VolumeParams } from "../backends/backend.ts";
import { createFileBackend } from "../backends/file/file-backend.ts";
import { createRestClient } from "../backends/routeros/rest-client.ts";
import { createRouterOsBackend } from "../backends/routeros/routeros-backend.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { GO_DRIVER_DEFAULT_PREFIX } from "../config/nqn.ts";
import { AbsolutePath, DurationMs } from "../config/schemas.ts";
import { controllerHandlers, controllerProbe } from "../controller/service.ts";
import { volumePathProblem } from "../controller/validation.ts";
import { identityHandlers } from "../csi/identity.ts";
import { startCsiServer } from "../csi/server.ts";
import { errorMessage } from "../runtime/errors.ts";
import { daemonDirsProblem, runDaemon } from "./daemon.ts";
import type { Mode, ModeContext } from "./types.ts";
import { KUBE_OPTIONS, kubeClientFor } from "../k8s/mode-options.ts";
import { createNodeExistence } from "../k8s/node-existence.ts";

export const DEFAULT_VOLUME_PATH = "/storage-pool/metal-csi";
const PASSWORD_ENV = "RDS_CSI_ROUTEROS_PASSWORD";

const VolumePath = v.pipe(v.string(), v.check((s) => volumePathProblem(s) === null, (i) => `volume path ${JSON.stringify(i.input)} ${volumePathProblem(String(i.input))}`));
const Int = (min: number, max: number) => v.pipe(v.number("must be a number"), v.integer("must be a whole number"), v.minValue(min, `must be at least ${min}`), v.maxValue(max, `must be at most ${max}`));

function readPassword(cfg: Record<string, unknown>): string {
  const file = cfg.routerosPasswordFile as string | undefined;
  if (file) {
    // The file holds only the secret; a trailing newline from `echo` is not part of it.
    return readFileSync(file, "utf8").replace(/\r?\n$/, "");
  }
  const env = process.env[PASSWORD_ENV];
  if (env) return env;
  throw new Error(`routeros backend needs a password: --routeros-password-file or ${PASSWORD_ENV}`);
}

/** Builds the backend from the controller's flags; gc reuses it to list and delete disks. */
export function buildBackend(ctx: ModeContext, nqnPrefix: string): { backend: Backend; managementHost?: string } {
  const cfg = ctx.config;
  const requestTimeoutMs = cfg.requestTimeout as number;
  if (cfg.backend === "file") {
    return { backend: createFileBackend({ dir: cfg.fileDir as string, runner: ctx.runner, log: ctx.log, opTimeoutMs: requestTimeoutMs, copyTimeoutMs: cfg.copyTimeout as number }) };
  }
  const url = cfg.routerosUrl as string | undefined;
  const user = cfg.routerosUser as string | undefined;
  if (!url) throw new Error("--routeros-url is required with --backend routeros");
  if (!user) throw new Error("--routeros-user is required with --backend routeros");
  if (cfg.routerosInsecureSkipTlsVerify) {
    ctx.log.warn({ url }, "TLS certificate verification of the RouterOS REST API is OFF (--routeros-insecure-skip-tls-verify): anyone on the path can read the credentials");
  }
  const caFile = cfg.routerosCaFile as string | undefined;
  const client = createRestClient({
    url, user, password: readPassword(cfg), ca: caFile ? readFileSync(caFile, "utf8") : undefined,
    insecureSkipTlsVerify: !!cfg.routerosInsecureSkipTlsVerify, requestTimeoutMs, breakers: ctx.breakers, log: ctx.log,
  });
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  const backend = createRouterOsBackend({
    client, log: ctx.log, nqnPrefix, defaultNvmeAddress: (cfg.nvmeAddress as string | undefined) ?? host,
    copyTimeoutMs: cfg.copyTimeout as number, copyStartTimeoutMs: requestTimeoutMs,
  });
  return { backend, managementHost: host };
}

export const mode: Mode = {
  command: "csi-controller",
  describe: "CSI Identity + Controller: volumes, snapshots and export restriction on the RDS (RouterOS REST) or in a local directory",
  options: [
    { name: "backend", type: "string", describe: "Where disks live", default: "file", choices: ["routeros", "file"] },
    { name: "file-dir", type: "string", describe: "Directory of the file backend", default: DEFAULTS.fileDir, schema: AbsolutePath },
    { name: "routeros-url", type: "string", describe: "RouterOS REST base URL, e.g. https://10.0.0.5", schema: v.pipe(v.string(), v.regex(/^https:\/\/[^\s/]+\/?$/, "must be https://host[:port]")) },
    { name: "routeros-user", type: "string", describe: "RouterOS user (group with read,write,api,rest-api)" },
    { name: "routeros-password-file", type: "string", describe: `File holding the RouterOS password (or env ${PASSWORD_ENV})`, schema: AbsolutePath },
    { name: "routeros-ca-file", type: "string", describe: "PEM CA bundle that signed the RouterOS certificate", schema: AbsolutePath },
    { name: "routeros-insecure-skip-tls-verify", type: "boolean", describe: "Do not verify the RouterOS certificate (logs a warning at every start)", default: false },
    { name: "request-timeout", type: "string", describe: "Deadline of one backend request", default: "10s", schema: DurationMs },
    { name: "copy-timeout", type: "string", describe: "How long a snapshot/clone copy is awaited before the RPC returns and the CO retries", default: "50s", schema: DurationMs },
    { name: "volume-path", type: "string", describe: "Default directory of backing files on the RDS (StorageClass volumePath)", default: DEFAULT_VOLUME_PATH, schema: VolumePath },
    { name: "nvme-address", type: "string", describe: "Default NVMe/TCP address (StorageClass nvmeAddress; default: the REST host)" },
    { name: "nvme-port", type: "number", describe: "Default NVMe/TCP port", default: 4420, schema: Int(1, 65535) },
    { name: "ctrl-loss-tmo", type: "number", describe: "Default ctrl_loss_tmo in seconds (-1 = retry forever)", default: -1, schema: Int(-1, 31_536_000) },
    { name: "reconnect-delay", type: "number", describe: "Default reconnect_delay in seconds", default: 5, schema: Int(1, 3600) },
    { name: "keep-alive-tmo", type: "number", describe: "Default keep_alive_tmo in seconds (0 = kernel default)", default: 0, schema: Int(0, 3600) },
    { name: "fs-type", type: "string", describe: "Default filesystem", default: "ext4", choices: ["ext4", "xfs"] },
    { name: "admin-socket", type: "string", describe: "Admin socket (breaker list/reset); default <state-dir>/controller-admin.sock", schema: AbsolutePath },
    ...KUBE_OPTIONS,
  ],
  async run(ctx) {
    const cfg = ctx.config;
    const unsafe = daemonDirsProblem(cfg);
    if (unsafe) {
      ctx.log.fatal(`csi-controller: ${unsafe}`);
      return 2;
    }
    const kube = await kubeClientFor(ctx).catch((e: Error) => e);
    if (kube instanceof Error) {
      ctx.log.fatal(`csi-controller: ${kube.message}`);
      return 2;
    }
    const nqnPrefix = (cfg.nqnPrefix as string | undefined) ?? GO_DRIVER_DEFAULT_PREFIX;
    let built: ReturnType<typeof buildBackend>;
    try {
      built = buildBackend(ctx, nqnPrefix);
    } catch (e) {
      ctx.log.fatal({ err: errorMessage(e) }, "csi-controller: bad configuration");
      return 2;
    }
    const { backend, managementHost } = built;
    await backend.recover?.().catch((e) => ctx.log.warn({ err: errorMessage(e) }, "could not clear temp files of interrupted writes; they are ignored"));
    const defaults: VolumeParams = {
      volumePath: cfg.volumePath as string,
      ...(cfg.nvmeAddress ? { nvmeAddress: cfg.nvmeAddress as string } : {}),
      nvmePort: cfg.nvmePort as number,
      ctrlLossTmo: cfg.ctrlLossTmo as number,
      reconnectDelay: cfg.reconnectDelay as number,
      keepAliveTmo: cfg.keepAliveTmo as number,
      fsType: cfg.fsType as string,
    };
    const deps = {
      backend, breakers: ctx.breakers, log: ctx.log, defaults, managementHost, probeTimeoutMs: cfg.requestTimeout as number,
      requireHostNqn: backend.kind === "routeros",
      ...(kube ? { nodes: createNodeExistence(kube, { ttlMs: 30_000, log: ctx.log }) } : {}),
    };
    const server = await startCsiServer({
      endpoint: cfg.endpoint as string,
      socketMode: cfg.socketMode as number,
      allowSharedSocketDir: cfg.allowSharedSocketDir === true,
      handlers: {
        Identity: identityHandlers({
          driverName: cfg.driverName as string,
          version: ctx.version,
          pluginCapabilities: [{ service: { type: "CONTROLLER_SERVICE" } }, { volume_expansion: { type: "ONLINE" } }],
          probe: controllerProbe(deps),
        }),
        Controller: controllerHandlers(deps),
      },
      shutdown: ctx.shutdown,
      log: ctx.log,
      metrics: ctx.metrics,
    });
    ctx.shutdown.onClose(() => server.close());
    ctx.log.info({ backend: backend.kind, address: backend.address, nqn_prefix: nqnPrefix }, "csi-controller ready");
    return runDaemon(ctx, { adminSocket: (cfg.adminSocket as string | undefined) ?? `${cfg.stateDir as string}/controller-admin.sock` });
  },
};
