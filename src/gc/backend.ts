import { readFileSync } from "node:fs";
import type { Backend } from "../backends/backend.ts";
import { createFileBackend } from "../backends/file/file-backend.ts";
import { createRestClient } from "../backends/routeros/rest-client.ts";
import { createRouterOsBackend } from "../backends/routeros/routeros-backend.ts";
import { mode as controllerMode } from "../modes/csi-controller.ts";
import type { ModeContext, OptionSpec } from "../modes/types.ts";

/**
 * gc reaches the backend with the controller's own flags (same names, same validation), taken
 * from the csi-controller mode rather than restated. Only `--backend` differs: for gc it has no
 * default, because listing a backend is opt-in.
 */
const SHARED = new Set([
  "backend", "file-dir", "routeros-url", "routeros-user", "routeros-password-file", "routeros-ca-file",
  "routeros-insecure-skip-tls-verify", "request-timeout",
]);

export const BACKEND_OPTIONS: readonly OptionSpec[] = controllerMode.options
  .filter((o) => SHARED.has(o.name))
  .map((o) => (o.name === "backend"
    ? { ...o, default: undefined, describe: "Also collect unreferenced disks of this backend (off when unset)" }
    : o));

const PASSWORD_ENV = "RDS_CSI_ROUTEROS_PASSWORD";

/**
 * Builds the backend named by `--backend`, or undefined. Lists and deletes only: the NVMe
 * export defaults of the controller do not matter here.
 */
export function backendFromConfig(ctx: ModeContext, nqnPrefix: string): Backend | undefined {
  const cfg = ctx.config;
  const timeout = cfg.requestTimeout as number;
  if (cfg.backend === undefined) return undefined;
  if (cfg.backend === "file") return createFileBackend({ dir: cfg.fileDir as string, runner: ctx.runner, log: ctx.log, opTimeoutMs: timeout });
  const url = cfg.routerosUrl as string | undefined;
  const user = cfg.routerosUser as string | undefined;
  if (!url) throw new Error("--routeros-url is required with --backend routeros");
  if (!user) throw new Error("--routeros-user is required with --backend routeros");
  const file = cfg.routerosPasswordFile as string | undefined;
  const password = file ? readFileSync(file, "utf8").replace(/\r?\n$/, "") : process.env[PASSWORD_ENV];
  if (!password) throw new Error(`--backend routeros needs a password: --routeros-password-file or ${PASSWORD_ENV}`);
  const caFile = cfg.routerosCaFile as string | undefined;
  const client = createRestClient({
    url, user, password, ca: caFile ? readFileSync(caFile, "utf8") : undefined,
    insecureSkipTlsVerify: !!cfg.routerosInsecureSkipTlsVerify, requestTimeoutMs: timeout, breakers: ctx.breakers, log: ctx.log,
  });
  return createRouterOsBackend({
    client, log: ctx.log, nqnPrefix, defaultNvmeAddress: new URL(url).hostname,
    copyTimeoutMs: timeout, copyStartTimeoutMs: timeout,
  });
}
