import { createNodeContext, type NodeServiceDeps } from "./context.ts";
import { expandStatsHandlers } from "./expand-stats.ts";
import { infoHandlers } from "./info.ts";
import { publishHandlers } from "./publish.ts";
import { stageHandlers } from "./stage.ts";

export { DEFAULT_NODE_TIMEOUTS, targetOf, type NodeServiceDeps, type NodeTimeouts } from "./context.ts";
export { TOPOLOGY_KEY } from "./info.ts";

/**
 * The CSI Node service: one handler per RPC, each `rpc(schema, (request, ctx) => …)` like the
 * controller's, grouped by RPC pair over one shared context. Every RPC is idempotent; operations
 * on one volume are exclusive (a second → ABORTED) while different volumes run in parallel. Error
 * paths never tear down: what a failed stage set up stays, and teardown happens only in
 * Unpublish/Unstage.
 */
export function createNodeService(deps: NodeServiceDeps) {
  const c = createNodeContext(deps);
  return {
    ...stageHandlers(c),
    ...publishHandlers(c),
    ...expandStatsHandlers(c),
    ...infoHandlers(c),
  };
}

export type NodeService = ReturnType<typeof createNodeService>;
