import { access } from "node:fs/promises";
import { join } from "node:path";
import { classifyNqn, globToRegExp } from "../config/nqn.ts";
import { errorMessage } from "../runtime/errors.ts";
import { readHostNqn, type HostNqnRead } from "../nvme/host-nqn.ts";
import { listSubsystems, nativeMultipath, type NvmeSubsystem } from "../nvme/sysfs.ts";
import { systemVolumeNqns } from "../nvme/system-volumes.ts";
import { finding, type Check, type Finding, type HealthDeps, type RoundFacts } from "./types.ts";

/**
 * Host NQNs known to be baked into images or derived from placeholder DMI UUIDs: every node that
 * boots the image shares them, and the target cannot tell the nodes apart.
 */
const SHARED_HOSTNQN_UUIDS = [
  "00000000-0000-0000-0000-000000000000",
  "ffffffff-ffff-ffff-ffff-ffffffffffff",
  "03000200-0400-0500-0006-000700080009",
];

const HEAD = /^nvme\d+n\d+$/;

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/** What an operator needs to know first: the node's own volumes, then what is fenced off, then ours. */
function classify(s: NvmeSubsystem, deps: HealthDeps, systemNqns: ReadonlySet<string>): string {
  if (systemNqns.has(s.nqn)) return "system";
  if (deps.protectedNqns.some((p) => globToRegExp(p).test(s.nqn))) return "protected";
  if (!deps.nqnPrefix) return "unmanaged";
  return classifyNqn(s.nqn, { prefix: deps.nqnPrefix, protectedPatterns: deps.protectedNqns }, systemNqns).managed
    ? "managed"
    : "foreign";
}

async function subsystemFindings(deps: HealthDeps, facts: RoundFacts, signal: AbortSignal): Promise<Finding[]> {
  const subsystems = await listSubsystems(deps.sysfsRoot, { timeoutMs: deps.probeTimeoutMs, signal });
  const systemNqns = facts.mounts
    ? await systemVolumeNqns(
        deps.sysfsRoot,
        facts.mounts,
        { workloadTrees: [deps.kubeletDir], timeoutMs: deps.probeTimeoutMs, signal },
        subsystems,
      )
    : new Set<string>();
  const out: Finding[] = [];
  const rows = subsystems.map((s) => ({
    nqn: s.nqn,
    name: s.name,
    class: classify(s, deps, systemNqns),
    paths: s.controllers.map((c) => ({
      controller: c.name,
      state: c.state,
      transport: c.transport,
      address: c.address,
    })),
    devices: s.namespaces.filter((n) => HEAD.test(n.name)).map((n) => n.name),
  }));
  out.push(
    finding(
      "nvme",
      "info",
      "nvme_subsystems",
      `${rows.length} NVMe subsystems (${["managed", "protected", "system", "foreign", "unmanaged"].map((c) => `${rows.filter((r) => r.class === c).length} ${c}`).join(", ")})`,
      { subsystems: rows },
    ),
  );

  const badPaths = rows.flatMap((r) => r.paths.filter((p) => p.state !== "live").map((p) => ({ nqn: r.nqn, ...p })));
  out.push(
    finding(
      "nvme",
      badPaths.length ? "warning" : "ok",
      "nvme_paths_not_live",
      badPaths.length
        ? `${badPaths.length} NVMe paths not live: ${badPaths
            .slice(0, 5)
            .map((p) => `${p.controller} ${p.state} (${p.nqn})`)
            .join(", ")}`
        : "every NVMe path is live",
      badPaths.length ? { paths: badPaths } : undefined,
    ),
  );

  // Incident 4: the subsystem is there but nothing usable hangs off it.
  const orphaned = rows.filter((r) => r.paths.length === 0 || r.devices.length === 0);
  out.push(
    finding(
      "nvme",
      orphaned.length ? "warning" : "ok",
      "nvme_orphaned_subsystems",
      orphaned.length
        ? `${orphaned.length} orphaned subsystems (no controller or no namespace): ${orphaned.map((r) => `${r.nqn} [${r.class}]`).join(", ")}`
        : "no orphaned subsystems",
      orphaned.length ? { subsystems: orphaned.map((r) => ({ nqn: r.nqn, class: r.class })) } : undefined,
    ),
  );

  // Incident 1: a prefix covering the node's own boot volume would let cleanup disconnect it.
  const covered = deps.nqnPrefix ? [...systemNqns].filter((n) => n.startsWith(deps.nqnPrefix!)) : [];
  out.push(
    finding(
      "nvme",
      covered.length ? "critical" : "ok",
      "nvme_prefix_covers_system_volume",
      covered.length
        ? `managed prefix ${deps.nqnPrefix} matches subsystems backing system mounts: ${covered.join(", ")}`
        : deps.nqnPrefix
          ? `managed prefix ${deps.nqnPrefix} matches no system volume`
          : "no managed prefix configured",
      covered.length ? { nqns: covered } : undefined,
    ),
  );
  return out;
}

async function hostFindings(deps: HealthDeps, signal: AbortSignal): Promise<Finding[]> {
  const out: Finding[] = [];
  const multipath = await nativeMultipath(deps.sysfsRoot, { timeoutMs: deps.probeTimeoutMs, signal });
  out.push(
    finding(
      "nvme",
      "info",
      "nvme_native_multipath",
      multipath === undefined
        ? "nvme_core multipath parameter not present"
        : `native multipath ${multipath ? "on" : "off"}`,
      { multipath: multipath ?? null },
    ),
  );

  const tcp = await exists(join(deps.sysfsRoot, "module", "nvme_tcp"));
  out.push(
    finding(
      "nvme",
      tcp ? "ok" : "warning",
      "nvme_tcp_module",
      tcp ? "nvme_tcp is loaded" : "nvme_tcp is not loaded (modprobe nvme_tcp)",
    ),
  );

  const r = await deps.runner(deps.nvmeCommand, ["version"], { timeoutMs: 3000, signal });
  const version = /version\s+(\S+)/.exec(r.stdout)?.[1];
  out.push(
    r.exitCode === 0
      ? finding("nvme", "ok", "nvme_cli", `nvme-cli ${version ?? "(version unknown)"}`, { version: version ?? null })
      : finding(
          "nvme",
          "warning",
          "nvme_cli",
          r.spawnError
            ? `nvme-cli not found (${r.spawnError})`
            : `nvme version failed (${r.timedOut ? "timed out" : `exit ${r.exitCode}`})`,
        ),
  );

  out.push(hostNqnFinding(deps, await readHostNqn(deps.runner, deps.hostnqnFile, { signal })));
  return out;
}

function hostNqnFinding(deps: HealthDeps, host: HostNqnRead): Finding {
  switch (host.state) {
    case "found":
      return SHARED_HOSTNQN_UUIDS.some((u) => host.nqn.toLowerCase().endsWith(u))
        ? finding(
            "nvme",
            "warning",
            "nvme_hostnqn",
            `${deps.hostnqnFile} holds a shared default (${host.nqn}): generate a per-node one (nvme gen-hostnqn)`,
          )
        : finding("nvme", "ok", "nvme_hostnqn", `host NQN ${host.nqn}`);
    case "missing":
    case "empty":
    case "unreadable":
      return finding("nvme", "warning", "nvme_hostnqn", `${host.message}: the target cannot tell this node apart`);
    case "invalid":
      // csi-node refuses to start with it: no volume can be attached here.
      return finding("nvme", "critical", "nvme_hostnqn", `${host.message}; csi-node will not start with it`);
  }
}

export const nvmeCheck: Check = {
  name: "nvme",
  async run(deps, facts, signal) {
    // Halves fail separately: a wedged sysfs scan must not hide a missing nvme_tcp or host NQN.
    const parts = await Promise.allSettled([subsystemFindings(deps, facts, signal), hostFindings(deps, signal)]);
    return parts.flatMap((p, i) =>
      p.status === "fulfilled"
        ? p.value
        : [
            finding(
              "nvme",
              "warning",
              "check_failed",
              `nvme ${i === 0 ? "subsystem scan" : "host checks"} failed: ${errorMessage(p.reason)}`,
            ),
          ],
    );
  },
};
