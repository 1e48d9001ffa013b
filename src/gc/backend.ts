import type { Backend } from "../backends/backend.ts";
import { BACKEND_ACCESS_OPTIONS, BACKEND_OPTION, buildBackend } from "../backends/build.ts";
import type { ConfigOf, OptionSpec } from "../config/option-spec.ts";
import type { ModeContext } from "../runtime/mode-context.ts";

/**
 * gc reaches the backend with the controller's own flags (same names, same validation, declared
 * once in backends/build.ts). Only `--backend` differs: for gc it has no default, because listing
 * a backend is opt-in.
 */
export const BACKEND_OPTIONS = [
  {
    ...BACKEND_OPTION,
    default: undefined,
    describe: "Also collect unreferenced disks of this backend (off when unset)",
  },
  ...BACKEND_ACCESS_OPTIONS,
] as const satisfies readonly OptionSpec[];

export type GcBackendConfig = ConfigOf<typeof BACKEND_OPTIONS> & { stateDir: string; nvmeAddress?: string | undefined };

/**
 * Builds the backend named by `--backend`, or undefined, with the controller's own factory. Lists
 * and deletes only: copies never start here, so their deadline is just the request deadline.
 */
export async function backendFromConfig(
  ctx: Pick<ModeContext<GcBackendConfig>, "config" | "runner" | "log" | "breakers">,
  nqnPrefix: string,
): Promise<Backend | undefined> {
  const { backend } = ctx.config;
  if (backend === undefined) return undefined;
  return (
    await buildBackend(
      { ...ctx, config: { ...ctx.config, backend, copyTimeout: ctx.config.requestTimeout } },
      nqnPrefix,
    )
  ).backend;
}
