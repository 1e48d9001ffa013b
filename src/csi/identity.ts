import type { Handlers } from "./handler.ts";

export interface IdentityOptions {
  driverName: string;
  version: string;
  /** e.g. [{service: {type: "CONTROLLER_SERVICE"}}, {volume_expansion: {type: "ONLINE"}}] */
  pluginCapabilities: unknown[];
  /** Real readiness: backend reachable and breaker closed (controller), start-up checks passed (node). */
  probe: () => Promise<{ ready: boolean; reason?: string }>;
}

export function identityHandlers(opts: IdentityOptions): Handlers {
  return {
    GetPluginInfo: async () => ({ name: opts.driverName, vendor_version: opts.version, manifest: {} }),
    GetPluginCapabilities: async () => ({ capabilities: opts.pluginCapabilities }),
    async Probe(_req, ctx) {
      const r = await opts.probe();
      if (!r.ready) ctx.log.warn({ reason: r.reason }, "probe: not ready");
      return { ready: { value: r.ready } };
    },
  };
}
