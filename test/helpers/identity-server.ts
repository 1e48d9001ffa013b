import { identityHandlers } from "../../src/csi/identity.ts";
import { startCsiServer, type CsiServer } from "../../src/csi/server.ts";
import { createMetrics } from "../../src/runtime/metrics.ts";
import { createShutdownCoordinator } from "../../src/runtime/shutdown.ts";
import { captureLogger } from "./log-capture.ts";

/** A CSI server with only the Identity service (driver "d", version "1", always ready), its log captured. */
export async function startIdentityServer(
  endpoint: string,
): Promise<{ server: CsiServer; cap: ReturnType<typeof captureLogger> }> {
  const cap = captureLogger();
  const server = await startCsiServer({
    endpoint,
    handlers: {
      Identity: identityHandlers({
        driverName: "d",
        version: "1",
        pluginCapabilities: [],
        probe: async () => ({ ready: true }),
      }),
    },
    shutdown: createShutdownCoordinator({ graceMs: 1000, log: cap.log }),
    log: cap.log,
    metrics: createMetrics(),
  });
  return { server, cap };
}
