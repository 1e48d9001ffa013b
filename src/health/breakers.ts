import { adminRequest, adminSocketPath } from "../runtime/admin.ts";
import type { BreakerInfo } from "../runtime/breakers.ts";
import { errorMessage } from "../runtime/errors.ts";
import { finding, type Check } from "./types.ts";

/** Breakers of a running csi-node, through its admin socket. No csi-node running is not a fault of this node. */
export const breakersCheck: Check = {
  name: "breakers",
  async run(deps) {
    const socket = adminSocketPath(deps.stateDir);
    let list: BreakerInfo[];
    try {
      const { status, body } = await adminRequest<BreakerInfo[]>(socket, "/breakers", { timeoutMs: 3000 });
      if (status !== 200 || !Array.isArray(body)) throw new Error(`HTTP ${status}`);
      list = body;
    } catch (e) {
      return [
        finding(
          "breakers",
          "info",
          "csi_node_breakers",
          `csi-node admin endpoint ${socket} not reachable (${errorMessage(e)})`,
        ),
      ];
    }
    const open = list.filter((b) => b.state === "open");
    const half = list.filter((b) => b.state === "half-open");
    return [
      finding(
        "breakers",
        open.length ? "warning" : "ok",
        "csi_node_breakers",
        open.length
          ? `${open.length} circuit breakers open: ${open.map((b) => b.key).join(", ")} (reset: rds-csi breaker reset <key>)`
          : `${list.length} breakers, none open${half.length ? `, ${half.length} half-open` : ""}`,
        { breakers: list },
      ),
    ];
  },
};
