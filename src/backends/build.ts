import { readFileSync } from "node:fs";
import * as v from "valibot";
import type { Backend } from "./backend.ts";
import { DEFAULTS } from "../config/defaults.ts";
import type { OptionSpec } from "../config/option-spec.ts";
import { AbsolutePath, DurationMs } from "../config/schemas.ts";
import type { ModeContext } from "../runtime/mode-context.ts";

const PASSWORD_ENV = "RDS_CSI_ROUTEROS_PASSWORD";

/**
 * The options that say where disks live and how to reach them: csi-controller takes them all, gc
 * takes them to list and delete disks (with `--backend` off by default there).
 */
export const BACKEND_OPTIONS: readonly OptionSpec[] = [
  { name: "backend", type: "string", describe: "Where disks live", default: "file", choices: ["routeros", "file"] },
  { name: "file-dir", type: "string", describe: "Directory of the file backend", default: DEFAULTS.fileDir, schema: AbsolutePath },
  { name: "routeros-url", type: "string", describe: "RouterOS REST base URL, e.g. https://10.0.0.5", schema: v.pipe(v.string(), v.regex(/^https:\/\/[^\s/]+\/?$/, "must be https://host[:port]")) },
  { name: "routeros-user", type: "string", describe: "RouterOS user (group with read,write,api,rest-api)" },
  { name: "routeros-password-file", type: "string", describe: `File holding the RouterOS password (or env ${PASSWORD_ENV})`, schema: AbsolutePath },
  { name: "routeros-ca-file", type: "string", describe: "PEM CA bundle that signed the RouterOS certificate", schema: AbsolutePath },
  { name: "routeros-insecure-skip-tls-verify", type: "boolean", describe: "Do not verify the RouterOS certificate (logs a warning at every start)", default: false },
  { name: "request-timeout", type: "string", describe: "Deadline of one backend request", default: "10s", schema: DurationMs },
  { name: "copy-timeout", type: "string", describe: "Deadline of the request that copies a disk (snapshot, clone); RouterOS cuts requests at 60 s. The CO retries a copy still running; it is never sent twice", default: "60s", schema: DurationMs },
];

function readPassword(cfg: Record<string, unknown>): string {
  const file = cfg.routerosPasswordFile as string | undefined;
  if (file) {
    // The file holds only the secret; a trailing newline from `echo` is not part of it.
    return readFileSync(file, "utf8").replace(/\r?\n$/, "");
  }
  const env = process.env[PASSWORD_ENV];
  if (env) return env;
  throw new Error(`routeros backend needs a password: --routeros-password-file or ${PASSWORD_ENV}`);
}

/**
 * Builds the backend from the controller's flags; gc reuses it to list and delete disks. Each
 * backend is imported only when chosen: gc borrows these options without loading either.
 */
export async function buildBackend(ctx: ModeContext, nqnPrefix: string): Promise<{ backend: Backend; managementHost?: string }> {
  const cfg = ctx.config;
  const requestTimeoutMs = cfg.requestTimeout as number;
  if (cfg.backend === "file") {
    const { createFileBackend } = await import("./file/file-backend.ts");
    return { backend: createFileBackend({ dir: cfg.fileDir as string, runner: ctx.runner, log: ctx.log, opTimeoutMs: requestTimeoutMs, copyTimeoutMs: cfg.copyTimeout as number }) };
  }
  const url = cfg.routerosUrl as string | undefined;
  const user = cfg.routerosUser as string | undefined;
  if (!url) throw new Error("--routeros-url is required with --backend routeros");
  if (!user) throw new Error("--routeros-user is required with --backend routeros");
  if (cfg.routerosInsecureSkipTlsVerify) {
    ctx.log.warn({ url }, "TLS certificate verification of the RouterOS REST API is OFF (--routeros-insecure-skip-tls-verify): anyone on the path can read the credentials");
  }
  const caFile = cfg.routerosCaFile as string | undefined;
  const { createRestClient } = await import("./routeros/rest-client.ts");
  const { createRouterOsBackend } = await import("./routeros/routeros-backend.ts");
  const client = createRestClient({
    url, user, password: readPassword(cfg), ca: caFile ? readFileSync(caFile, "utf8") : undefined,
    insecureSkipTlsVerify: !!cfg.routerosInsecureSkipTlsVerify, requestTimeoutMs, breakers: ctx.breakers, log: ctx.log,
  });
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  const backend = createRouterOsBackend({
    client, log: ctx.log, nqnPrefix, defaultNvmeAddress: (cfg.nvmeAddress as string | undefined) ?? host,
    copyTimeoutMs: cfg.copyTimeout as number, stateDir: cfg.stateDir as string,
  });
  return { backend, managementHost: host };
}

