import { finding, type Check, type DeadMount, type Finding } from "./types.ts";

/**
 * Every mount point probed from a child with a deadline (mount_status_monitor's model): the
 * summary line is the same "Checked N mounts; M are dead" operators grep for.
 */
export const mountsCheck: Check = {
  name: "mounts",
  timeoutMs: (deps, common) => Math.max(common, deps.probeTimeoutMs + 10_000),
  async run(deps, facts) {
    if (!facts.mounts) {
      return [
        finding(
          "mounts",
          "critical",
          "mountinfo_unreadable",
          `mount table could not be read: ${facts.mountsError ?? "unknown"}`,
        ),
      ];
    }
    // A path mounted several times (stacked) is one thing to probe: only the top mount answers.
    const paths = [...new Set(facts.mounts.map((m) => m.mountPoint))];
    const results = await Promise.all(
      paths.map(async (path) => ({ path, r: await deps.probes.probe(path, { timeoutMs: deps.probeTimeoutMs }) })),
    );
    const dead: DeadMount[] = [];
    const failed: { path: string; reason: string }[] = [];
    for (const { path, r } of results) {
      if (r.state === "dead") dead.push({ path, reason: r.reason, sinceMs: r.sinceMs });
      // A mount point that vanished between reading the table and probing is churn, not a fault.
      else if (r.state === "error" && !r.missing) failed.push({ path, reason: r.reason });
    }
    facts.mountSummary = { total: paths.length, dead };
    const out: Finding[] = [
      finding(
        "mounts",
        dead.length ? "critical" : "ok",
        "dead_mounts",
        `Checked ${paths.length} mounts; ${dead.length} are dead`,
        dead.length ? { dead } : undefined,
      ),
      finding(
        "mounts",
        failed.length ? "warning" : "ok",
        "mount_probe_errors",
        failed.length ? `${failed.length} mounts could not be checked` : "every mount answered its probe",
        failed.length ? { failed } : undefined,
      ),
    ];
    return out;
  },
};

/** Storm guard (incident 2): the same filesystem subtree mounted over and over, or mounts stacked on one target. */
export const stormCheck: Check = {
  name: "mount-storm",
  async run(deps, facts) {
    if (!facts.mounts) return [];
    const threshold = deps.stormThreshold;
    // Keyed by device and root, not by the source string: thousands of independent tmpfs mounts all say "tmpfs".
    const bySubtree = new Map<string, { source: string; dev: string; root: string; count: number }>();
    const byTarget = new Map<string, number>();
    for (const m of facts.mounts) {
      const key = `${m.dev} ${m.root}`;
      const e = bySubtree.get(key);
      if (e) e.count++;
      else bySubtree.set(key, { source: m.source, dev: m.dev, root: m.root, count: 1 });
      byTarget.set(m.mountPoint, (byTarget.get(m.mountPoint) ?? 0) + 1);
    }
    const sources = [...bySubtree.values()].filter((e) => e.count > threshold).sort((a, b) => b.count - a.count);
    const targets = [...byTarget]
      .filter(([, n]) => n > threshold)
      .map(([target, count]) => ({ target, count }))
      .sort((a, b) => b.count - a.count);
    const total = facts.mounts.length;
    const totalLimit = threshold * 20;
    return [
      finding(
        "mount-storm",
        total > totalLimit ? "warning" : "ok",
        "mount_count",
        `${total} mount entries${total > totalLimit ? ` (more than ${totalLimit})` : ""}`,
        { total },
      ),
      finding(
        "mount-storm",
        sources.length ? "warning" : "ok",
        "mount_storm_sources",
        sources.length
          ? `${sources.length} sources mounted more than ${threshold} times: ${sources
              .slice(0, 5)
              .map((s) => `${s.source}:${s.root} ×${s.count}`)
              .join(", ")}`
          : `no source mounted more than ${threshold} times`,
        sources.length ? { sources } : undefined,
      ),
      finding(
        "mount-storm",
        targets.length ? "warning" : "ok",
        "mount_storm_targets",
        targets.length
          ? `${targets.length} targets with more than ${threshold} stacked mounts: ${targets
              .slice(0, 5)
              .map((t) => `${t.target} ×${t.count}`)
              .join(", ")}`
          : `no target has more than ${threshold} stacked mounts`,
        targets.length ? { targets } : undefined,
      ),
    ];
  },
};
