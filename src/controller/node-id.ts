import { nqnProblem } from "../config/nqn.ts";

/**
 * node_id as reported by NodeGetInfo: `<node-name>` or `<node-name>/<host-nqn>`, split at the first
 * "/" (node names cannot contain one). The host NQN is what the export is restricted to.
 */
export interface NodeRef {
  nodeName: string;
  hostNqn?: string;
}

const NODE_NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

/** The parsed node id, or a string saying why it is not one. */
export function parseNodeId(nodeId: string): NodeRef | string {
  const slash = nodeId.indexOf("/");
  const nodeName = slash < 0 ? nodeId : nodeId.slice(0, slash);
  if (!NODE_NAME.test(nodeName))
    return `node name ${JSON.stringify(nodeName.slice(0, 80))} is not a valid Kubernetes node name`;
  if (slash < 0) return { nodeName };
  const hostNqn = nodeId.slice(slash + 1);
  const problem = nqnProblem(hostNqn);
  if (problem) return `host NQN in node id ${problem}`;
  return { nodeName, hostNqn };
}
