import { unlinkSync } from "node:fs";
import { bindPrivateSocketSync } from "./private-socket.ts";
import type { BreakerRegistry } from "./breakers.ts";
import type { Logger } from "./log.ts";
import type { ShutdownCoordinator } from "./shutdown.ts";

/**
 * Local admin endpoint: HTTP over a unix socket in the state dir, mode 0600 so only root (the
 * process owner) can reset breakers. `rds-csi breaker list|reset` and doctor are its clients.
 */
export const adminSocketPath = (stateDir: string) => `${stateDir}/admin.sock`;

/** The controller's admin socket (doctor reads the backend's detected features there). */
export const controllerAdminSocketPath = (stateDir: string) => `${stateDir}/controller-admin.sock`;

export function serveAdmin(opts: {
  socketPath: string;
  breakers: BreakerRegistry;
  shutdown: ShutdownCoordinator;
  log: Logger;
  mode: string;
  /** What the backend detected (csi-controller): served at GET /backend. */
  backend?: () => unknown;
}) {
  // The state dir is ours alone: a shared one is refused at start-up, so no escape hatch here.
  const server = bindPrivateSocketSync(opts.socketPath, 0o600, { allowSharedDir: false }, (unix) =>
    Bun.serve({
      unix,
      fetch(req) {
        const url = new URL(req.url);
        if (req.method === "GET" && url.pathname === "/breakers") return Response.json(opts.breakers.list());
        if (req.method === "POST" && url.pathname === "/breakers/reset") {
          const key = url.searchParams.get("key") ?? "";
          const found = opts.breakers.reset(key);
          opts.log.info({ breaker: key, found }, "admin: breaker reset requested");
          return Response.json({ key, reset: found }, { status: found ? 200 : 404 });
        }
        if (req.method === "GET" && url.pathname === "/backend" && opts.backend) return Response.json(opts.backend());
        if (req.method === "GET" && url.pathname === "/status") {
          return Response.json({
            mode: opts.mode,
            pid: process.pid,
            draining: opts.shutdown.draining,
            in_flight: opts.shutdown.inFlight(),
          });
        }
        return new Response("not found\n", { status: 404 });
      },
    }),
  );
  return {
    stop() {
      server.stop(true);
      try {
        unlinkSync(opts.socketPath);
      } catch {
        /* gone */
      }
    },
  };
}

/** Client side, with a deadline: a wedged daemon must not wedge the operator's shell. */
export async function adminRequest<T>(
  socketPath: string,
  path: string,
  init: { method?: string; timeoutMs?: number } = {},
): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://localhost${path}`, {
    method: init.method ?? "GET",
    unix: socketPath,
    signal: AbortSignal.timeout(init.timeoutMs ?? 3_000),
  } as RequestInit);
  return { status: res.status, body: (await res.json()) as T };
}
