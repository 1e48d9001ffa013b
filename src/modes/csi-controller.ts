import * as v from "valibot";
import type { VolumeParams } from "../backends/backend.ts";
import { BACKEND_ACCESS_OPTIONS, BACKEND_OPTION, buildBackend, COPY_TIMEOUT_OPTION } from "../backends/build.ts";
import type { ConfigOf, OptionSpec } from "../config/option-spec.ts";
import type { COMMON_OPTIONS } from "../config/options.ts";
import { GO_DRIVER_DEFAULT_PREFIX } from "../config/nqn.ts";
import { AbsolutePath, DurationMs } from "../config/schemas.ts";
import { FS_TYPES, volumePathProblem } from "../controller/validation.ts";
import { controllerAdminSocketPath } from "../runtime/admin.ts";
import { daemonDirsProblem } from "../runtime/daemon-dirs.ts";
import { errorMessage } from "../runtime/errors.ts";
import type { Mode, ModeContext } from "./types.ts";
import { KUBE_OPTIONS, kubeClientFor } from "../k8s/mode-options.ts";

export const DEFAULT_VOLUME_PATH = "/storage-pool/metal-csi";

const VolumePath = v.pipe(
  v.string(),
  v.check(
    (s) => volumePathProblem(s) === null,
    (i) => `volume path ${JSON.stringify(i.input)} ${volumePathProblem(String(i.input))}`,
  ),
);
const Int = (min: number, max: number) =>
  v.pipe(
    v.number("must be a number"),
    v.integer("must be a whole number"),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );

const OPTIONS = [
  BACKEND_OPTION,
  ...BACKEND_ACCESS_OPTIONS,
  COPY_TIMEOUT_OPTION,
  {
    name: "probe-budget",
    type: "string",
    describe:
      "Longest time Probe waits for a fresh backend check before it reports the last known state (the check goes on in the background); leaves Probe under 1 s",
    default: "800ms",
    schema: DurationMs,
  },
  {
    name: "volume-path",
    type: "string",
    describe: "Default directory of backing files on the RDS (StorageClass volumePath)",
    default: DEFAULT_VOLUME_PATH,
    schema: VolumePath,
  },
  {
    name: "nvme-address",
    type: "string",
    describe: "Default NVMe/TCP address (StorageClass nvmeAddress; default: the REST host)",
  },
  { name: "nvme-port", type: "number", describe: "Default NVMe/TCP port", default: 4420, schema: Int(1, 65535) },
  {
    name: "ctrl-loss-tmo",
    type: "number",
    describe: "Default ctrl_loss_tmo in seconds (-1 = retry forever)",
    default: -1,
    schema: Int(-1, 31_536_000),
  },
  {
    name: "reconnect-delay",
    type: "number",
    describe: "Default reconnect_delay in seconds",
    default: 5,
    schema: Int(1, 3600),
  },
  {
    name: "keep-alive-tmo",
    type: "number",
    describe: "Default keep_alive_tmo in seconds (0 = kernel default)",
    default: 0,
    schema: Int(0, 3600),
  },
  { name: "fs-type", type: "string", describe: "Default filesystem", default: "ext4", choices: FS_TYPES },
  {
    name: "admin-socket",
    type: "string",
    describe: "Admin socket (breaker list/reset); default <state-dir>/controller-admin.sock",
    schema: AbsolutePath,
  },
  ...KUBE_OPTIONS,
] as const satisfies readonly OptionSpec[];

type ControllerConfig = ConfigOf<[...typeof COMMON_OPTIONS, ...typeof OPTIONS]>;

export const mode: Mode<ControllerConfig> = {
  command: "csi-controller",
  servesMetrics: true,
  describe:
    "CSI Identity + Controller: volumes, snapshots and export restriction on the RDS (RouterOS REST) or in a local directory",
  options: OPTIONS,
  async run(ctx) {
    const cfg = ctx.config;
    const unsafe = daemonDirsProblem(cfg);
    if (unsafe) {
      ctx.log.fatal(`csi-controller: ${unsafe}`);
      return 2;
    }
    const kube = await kubeClientFor(cfg, ctx.log).catch((e: Error) => e);
    if (kube instanceof Error) {
      ctx.log.fatal(`csi-controller: ${kube.message}`);
      return 2;
    }
    const nqnPrefix = cfg.nqnPrefix ?? GO_DRIVER_DEFAULT_PREFIX;
    let built: Awaited<ReturnType<typeof buildBackend>>;
    try {
      built = await buildBackend(ctx, nqnPrefix);
    } catch (e) {
      ctx.log.fatal({ err: errorMessage(e) }, "csi-controller: bad configuration");
      return 2;
    }
    const { backend, managementHost } = built;
    await backend
      .recover?.()
      .catch((e) =>
        ctx.log.warn({ err: errorMessage(e) }, "could not clear temp files of interrupted writes; they are ignored"),
      );
    const defaults: VolumeParams = {
      volumePath: cfg.volumePath,
      ...(cfg.nvmeAddress ? { nvmeAddress: cfg.nvmeAddress } : {}),
      nvmePort: cfg.nvmePort,
      ctrlLossTmo: cfg.ctrlLossTmo,
      reconnectDelay: cfg.reconnectDelay,
      keepAliveTmo: cfg.keepAliveTmo,
      fsType: cfg.fsType,
    };
    // gRPC and the controller service load here, not with the options gc borrows from this file.
    const [
      { controllerHandlers },
      { createControllerProbe },
      { backendReport },
      { identityHandlers },
      { startCsiServer },
      { runDaemon },
      { createNodeExistence },
    ] = await Promise.all([
      import("../controller/service.ts"),
      import("../controller/probe.ts"),
      import("../backends/report.ts"),
      import("../csi/identity.ts"),
      import("../csi/server.ts"),
      import("./daemon.ts"),
      import("../k8s/node-existence.ts"),
    ]);
    const deps = {
      backend,
      breakers: ctx.breakers,
      log: ctx.log,
      defaults,
      managementHost,
      requireHostNqn: backend.kind === "routeros",
      ...(kube ? { nodes: createNodeExistence(kube, { ttlMs: 30_000, log: ctx.log }) } : {}),
    };
    const probe = createControllerProbe({
      backend,
      breakers: ctx.breakers,
      log: ctx.log,
      budgetMs: cfg.probeBudget,
      checkTimeoutMs: 3 * cfg.requestTimeout,
    });
    probe.start();
    const server = await startCsiServer({
      endpoint: cfg.endpoint,
      socketMode: cfg.socketMode,
      allowSharedSocketDir: cfg.allowSharedSocketDir,
      handlers: {
        Identity: identityHandlers({
          driverName: cfg.driverName,
          version: ctx.version,
          pluginCapabilities: [{ service: { type: "CONTROLLER_SERVICE" } }, { volume_expansion: { type: "ONLINE" } }],
          probe: probe.probe,
        }),
        Controller: controllerHandlers(deps),
      },
      shutdown: ctx.shutdown,
      log: ctx.log,
      metrics: ctx.metrics,
    });
    ctx.shutdown.onClose(() => server.close());
    ctx.log.info({ backend: backend.kind, address: backend.address, nqn_prefix: nqnPrefix }, "csi-controller ready");
    return runDaemon(ctx, {
      adminSocket: cfg.adminSocket ?? controllerAdminSocketPath(cfg.stateDir),
      backend: () => backendReport(backend),
    });
  },
};
