import { join } from "node:path";
import { VOLUME_PREFIX } from "../backends/ids.ts";
import { nqnPolicyProblem } from "../config/nqn.ts";
import { NVME_COMMAND_OPTION } from "../config/options.ts";
import type { Backend } from "../backends/backend.ts";
import { DurationMs } from "../config/schemas.ts";
import { BACKEND_OPTIONS, backendFromConfig } from "../gc/backend.ts";
import { executePlan, freshPlanRecheck, type ItemResult } from "../gc/execute.ts";
import { gatherFacts, type FactDeps } from "../gc/facts.ts";
import { plan } from "../gc/plan.ts";
import { referencedFromKubernetes, referencedFromOption } from "../gc/referenced.ts";
import { KUBE_OPTIONS, kubeClientFor } from "../k8s/mode-options.ts";
import { progressLine, renderJson, renderPlanText, renderResultsText, type Notes } from "../gc/render.ts";
import { attachmentsFromKubernetes } from "../gc/allowed-hosts.ts";
import type { KubeClient } from "../k8s/client.ts";
import { errorMessage } from "../runtime/errors.ts";
import { acquireLock, isLockHeld, readLock, type HeldLock } from "../runtime/lockfile.ts";
import type { ConfigOf, OptionSpec } from "../config/option-spec.ts";
import type { COMMON_OPTIONS } from "../config/options.ts";
import type { Mode, ModeContext } from "./types.ts";

export const EXIT_NOTHING = 0;
export const EXIT_CANDIDATES = 1;
export const EXIT_ERROR = 2;

const DESCRIBE = [
  "Fail-dumb garbage collection of what the driver leaked: dead mounts, NVMe subsystems, loop devices,",
  "staging records and (with --backend) unreferenced disks and allowed hosts of exports that no Node or",
  "VolumeAttachment accounts for (RouterOS side only). Shows the plan by default; --force acts.",
  "The plan only reads, so it runs beside a live csi-node; --force needs the node plugin stopped (or --ignore-lock).",
  "Exit codes: plan: 0 nothing to collect, 1 candidates exist, 2 error (including a refused lock).",
  "--force: 0 every candidate was collected (or there were none), 1 some were skipped, failed,",
  "timed out or not run (SIGTERM), 2 error before acting.",
].join("\n");

const OPTIONS = [
  { name: "force", type: "boolean", describe: "Act on the plan (default: only show it)", default: false },
  { name: "json", type: "boolean", describe: "Print JSON instead of a table", default: false },
  { name: "verbose", type: "boolean", describe: "Also list what was left alone and why", default: false },
  {
    name: "step-timeout",
    type: "string",
    describe: "Deadline of each step and each read (a step that misses it is not retried in this run)",
    default: "10s",
    schema: DurationMs,
  },
  {
    name: "grace",
    type: "string",
    describe: "Backend disks younger than this are never collected",
    default: "5m",
    schema: DurationMs,
  },
  {
    name: "ignore-lock",
    type: "boolean",
    describe: "With --force: act although a live csi-node holds its lock (logged as a warning)",
    default: false,
  },
  {
    name: "referenced-volumes",
    type: "array",
    describe:
      "Volume ids PersistentVolumes reference, or @/path (or /path) of a file of them; default: ask the Kubernetes API in-cluster",
  },
  NVME_COMMAND_OPTION,
  ...BACKEND_OPTIONS,
  ...KUBE_OPTIONS,
] as const satisfies readonly OptionSpec[];

type GcConfig = ConfigOf<[...typeof COMMON_OPTIONS, ...typeof OPTIONS], "nqn-prefix">;
type GcContext = ModeContext<GcConfig>;

/** The cluster's facts gc asks for: referenced volumes and (with a backend) attachments; one client, made on first use. */
function clusterSources(ctx: GcContext, timeoutMs: number): Pick<FactDeps, "referenced" | "attachments"> {
  let client: Promise<KubeClient | null> | undefined;
  const kube = () => (client ??= kubeClientFor(ctx.config, ctx.log));
  const given = ctx.config.referencedVolumes;
  return {
    referenced:
      given !== undefined
        ? () => referencedFromOption(given, timeoutMs)
        : async () => {
            const c = await kube();
            if (!c)
              return {
                state: "unknown",
                reason: "not running in-cluster and no --kubeconfig; give --referenced-volumes",
              };
            return referencedFromKubernetes(c);
          },
    attachments: async () => {
      const c = await kube();
      if (!c) return { state: "unknown", reason: "no Kubernetes API (not in a pod, no --kubeconfig)" };
      return attachmentsFromKubernetes(c);
    },
  };
}

/**
 * Lock rules: the plan only reads, so it runs beside a live csi-node (an hourly plan on a healthy
 * node must not fail); acting needs the node plugin stopped, because a volume it is staging right
 * now looks exactly like a leak. Stale locks are reported, and gc runs alone.
 */
function takeLocks(ctx: GcContext, notes: Notes): HeldLock | number {
  const stateDir = ctx.config.stateDir;
  const nodeLock = readLock(join(stateDir, "csi-node.lock"));
  if (nodeLock?.alive) {
    const who = `csi-node (pid ${nodeLock.pid}, since ${nodeLock.startedAt}) holds ${join(stateDir, "csi-node.lock")}`;
    if (!ctx.config.force) {
      notes.warnings.push(
        `${who}: this plan is a snapshot; a volume being staged right now can show up as a candidate`,
      );
    } else if (!ctx.config.ignoreLock) {
      process.stderr.write(
        `rds-csi gc: refusing to act: ${who}. Stop it first, or pass --ignore-lock if you are sure it is idle (the plan without --force runs beside it).\n`,
      );
      return EXIT_ERROR;
    } else {
      ctx.log.warn({ pid: nodeLock.pid }, "gc: --ignore-lock: acting although a live csi-node holds its lock");
      notes.warnings.push(`--ignore-lock: ${who}`);
    }
  } else if (nodeLock) {
    notes.warnings.push(`stale csi-node lock ignored (pid ${nodeLock.pid} is not running, ${nodeLock.command})`);
  }
  try {
    const held = acquireLock(join(stateDir, "gc.lock"), { command: "rds-csi gc" });
    if (held.replacedStale)
      notes.warnings.push(`stale gc lock replaced (pid ${held.replacedStale.pid} is not running)`);
    return held;
  } catch (e) {
    process.stderr.write(
      isLockHeld(e)
        ? `rds-csi gc: refusing to run: another gc is running: ${e.message}\n`
        : `rds-csi gc: cannot take the gc lock: ${errorMessage(e)}\n`,
    );
    return EXIT_ERROR;
  }
}

async function run(ctx: GcContext): Promise<number> {
  const cfg = ctx.config;
  const notes: Notes = { warnings: [] };
  const stepTimeoutMs = cfg.stepTimeout;
  const policy = { prefix: cfg.nqnPrefix, protectedPatterns: cfg.protectedNqn };
  const policyProblem = nqnPolicyProblem(policy);
  if (policyProblem) {
    process.stderr.write(`rds-csi gc: ${policyProblem}\n`);
    return EXIT_ERROR;
  }

  let backend: Backend | undefined;
  try {
    backend = await backendFromConfig(ctx, policy.prefix);
  } catch (e) {
    process.stderr.write(`rds-csi gc: ${errorMessage(e)}\n`);
    return EXIT_ERROR;
  }
  const lock = takeLocks(ctx, notes);
  if (typeof lock === "number") return lock;
  try {
    const factDeps: FactDeps = {
      runner: ctx.runner,
      log: ctx.log,
      policy,
      driverName: cfg.driverName,
      sysfsRoot: cfg.sysfsRoot,
      procRoot: cfg.procRoot,
      kubeletDir: cfg.kubeletDir,
      stateDir: cfg.stateDir,
      ownedFileDirs: [cfg.fileDir],
      timeoutMs: stepTimeoutMs,
      probeTimeoutMs: stepTimeoutMs,
      ...(backend ? { backend } : {}),
      ...clusterSources(ctx, stepTimeoutMs),
      slotPrefix: VOLUME_PREFIX,
      graceMs: cfg.grace,
    };
    let facts;
    try {
      facts = await gatherFacts(factDeps);
    } catch (e) {
      process.stderr.write(
        `rds-csi gc: cannot see the node well enough to plan, nothing was touched: ${errorMessage(e)}\n`,
      );
      return EXIT_ERROR;
    }
    const thePlan = plan(facts);
    const verbose = !!cfg.verbose;
    if (!cfg.force) {
      process.stdout.write(cfg.json ? renderJson(thePlan, null, notes) : renderPlanText(thePlan, { verbose, notes }));
      return thePlan.candidates.length ? EXIT_CANDIDATES : EXIT_NOTHING;
    }

    // SIGTERM aborts ctx.shutdown.signal; the current step finishes, the rest are reported as not run.
    let running = true;
    ctx.shutdown.install((code) => {
      if (running) process.exit(code);
    });
    const results: ItemResult[] = await ctx.shutdown.track("gc", "force", () =>
      executePlan(thePlan.candidates, {
        runner: ctx.runner,
        log: ctx.log,
        stepTimeoutMs,
        nvmeBin: cfg.nvmeCommand,
        recheck: freshPlanRecheck(factDeps, facts.referenced, facts.attachments),
        ...(backend ? { backend } : {}),
        stop: ctx.shutdown.signal,
        onProgress: progressLine(process.stderr),
      }),
    );
    running = false;
    process.stdout.write(
      cfg.json ? renderJson(thePlan, results, notes) : renderResultsText(results, thePlan, { verbose, notes }),
    );
    return results.every((r) => r.status === "done") ? EXIT_NOTHING : EXIT_CANDIDATES;
  } finally {
    lock.release();
    await backend?.close?.().catch(() => undefined);
  }
}

export const mode: Mode<GcConfig> = {
  command: "gc",
  describe: DESCRIBE,
  logToStderr: true,
  required: ["nqn-prefix"],
  options: OPTIONS,
  run,
};
