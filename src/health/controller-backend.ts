import type { BackendReport } from "../backends/report.ts";
import { adminRequest, controllerAdminSocketPath } from "../runtime/admin.ts";
import type { BreakerInfo } from "../runtime/breakers.ts";
import { errorMessage } from "../runtime/errors.ts";
import { finding, type Check, type Finding } from "./types.ts";

/**
 * A csi-controller on this host, through its admin socket: which RouterOS fields its backend found (and
 * the fallback for each one missing), and its backend breaker. No controller here is not a fault.
 */
export const controllerBackendCheck: Check = {
  name: "controller",
  async run(deps) {
    const socket = controllerAdminSocketPath(deps.stateDir);
    let report: BackendReport;
    let breakers: BreakerInfo[];
    try {
      const [b, br] = await Promise.all([
        adminRequest<BackendReport>(socket, "/backend", { timeoutMs: 3000 }),
        adminRequest<BreakerInfo[]>(socket, "/breakers", { timeoutMs: 3000 }),
      ]);
      if (b.status !== 200 || br.status !== 200 || !Array.isArray(br.body))
        throw new Error(`HTTP ${b.status}/${br.status}`);
      report = b.body;
      breakers = br.body;
    } catch (e) {
      return [
        finding(
          "controller",
          "info",
          "csi_controller_backend",
          `csi-controller admin endpoint ${socket} not reachable (${errorMessage(e)})`,
        ),
      ];
    }
    const out: Finding[] = [];
    const missing = report.fields.filter((f) => f.presence !== "yes");
    out.push(
      finding(
        "controller",
        "ok",
        "csi_controller_backend",
        `${report.kind} backend ${report.address}${report.version ? `, RouterOS ${report.version}` : ""}: ${report.fields.length ? report.fields.map((f) => `${f.field}=${f.presence}`).join(", ") : "no optional fields"}`,
        report,
      ),
    );
    for (const f of missing)
      out.push(
        finding(
          "controller",
          "info",
          "csi_controller_backend_field",
          `RouterOS /disk ${f.field}: ${f.presence === "no" ? "absent" : "not detected yet"}; ${f.effect}`,
        ),
      );
    const b = breakers.find((x) => x.key === `backend:${report.address}`);
    if (b?.state === "open") {
      out.push(
        finding(
          "controller",
          "warning",
          "csi_controller_backend_breaker",
          `backend breaker ${b.key} open until ${new Date(b.openUntil!).toISOString()} after ${b.failures} failures (last: ${b.lastError ?? "unknown"}); reset: rds-csi breaker reset ${b.key} --admin-socket ${socket}`,
          b,
        ),
      );
    } else if (b) {
      out.push(finding("controller", "ok", "csi_controller_backend_breaker", `backend breaker ${b.key} ${b.state}`, b));
    }
    return out;
  },
};
