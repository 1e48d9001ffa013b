import type { Backend } from "../backends/backend.ts";
import { BACKEND_OPTIONS as CONTROLLER_BACKEND_OPTIONS, buildBackend } from "../backends/build.ts";
import type { OptionSpec } from "../config/option-spec.ts";
import type { ModeContext } from "../runtime/mode-context.ts";

/**
 * gc reaches the backend with the controller's own flags (same names, same validation), taken
 * from the csi-controller mode rather than restated. Only `--backend` differs: for gc it has no
 * default, because listing a backend is opt-in.
 */
const SHARED = new Set([
  "backend", "file-dir", "routeros-url", "routeros-user", "routeros-password-file", "routeros-ca-file",
  "routeros-insecure-skip-tls-verify", "request-timeout",
]);

export const BACKEND_OPTIONS: readonly OptionSpec[] = CONTROLLER_BACKEND_OPTIONS
  .filter((o) => SHARED.has(o.name))
  .map((o) => (o.name === "backend"
    ? { ...o, default: undefined, describe: "Also collect unreferenced disks of this backend (off when unset)" }
    : o));

/**
 * Builds the backend named by `--backend`, or undefined, with the controller's own factory. Lists
 * and deletes only: copies never start here, so their deadline is just the request deadline.
 */
export async function backendFromConfig(ctx: ModeContext, nqnPrefix: string): Promise<Backend | undefined> {
  if (ctx.config.backend === undefined) return undefined;
  return (await buildBackend({ ...ctx, config: { copyTimeout: ctx.config.requestTimeout, ...ctx.config } }, nqnPrefix)).backend;
}
