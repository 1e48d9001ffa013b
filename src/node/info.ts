import { nodeRpc } from "./outcomes.ts";
import type { NodeContext } from "./context.ts";

export const TOPOLOGY_KEY = "topology.rds.csi.srvlab.io/node";

const NODE_CAPABILITIES = [
  "STAGE_UNSTAGE_VOLUME",
  "EXPAND_VOLUME",
  "GET_VOLUME_STATS",
  "VOLUME_CONDITION",
  "SINGLE_NODE_MULTI_WRITER",
];

/** NodeGetCapabilities and NodeGetInfo: answered from memory. */
export function infoHandlers(c: NodeContext) {
  const { deps } = c;
  return {
    NodeGetCapabilities: nodeRpc(c.schemas.NodeGetCapabilities, async () => ({
      capabilities: NODE_CAPABILITIES.map((type) => ({ rpc: { type } })),
    })),
    NodeGetInfo: nodeRpc(c.schemas.NodeGetInfo, async () => ({
      node_id: deps.hostNqn ? `${deps.nodeName}/${deps.hostNqn}` : deps.nodeName,
      max_volumes_per_node: deps.maxVolumes,
      accessible_topology: { segments: { [TOPOLOGY_KEY]: deps.nodeName } },
    })),
  };
}
