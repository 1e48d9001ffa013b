import { readFileSync } from "node:fs";
import * as v from "valibot";
import type { Backend } from "./backend.ts";
import { DEFAULTS } from "../config/defaults.ts";
import type { ConfigOf, OptionSpec } from "../config/option-spec.ts";
import { AbsolutePath, DurationMs } from "../config/schemas.ts";
import type { ModeContext } from "../runtime/mode-context.ts";

const PASSWORD_ENV = "RDS_CSI_ROUTEROS_PASSWORD";

/** Which backend: csi-controller defaults to `file`; gc takes it without a default (listing disks is opt-in). */
export const BACKEND_OPTION = {
  name: "backend",
  type: "string",
  describe: "Where disks live",
  default: "file",
  choices: ["routeros", "file"],
} as const satisfies OptionSpec;

/** How to reach the disks of either backend: taken by csi-controller and by gc (to list and delete). */
export const BACKEND_ACCESS_OPTIONS = [
  {
    name: "file-dir",
    type: "string",
    describe: "Directory of the file backend",
    default: DEFAULTS.fileDir,
    schema: AbsolutePath,
  },
  {
    name: "routeros-url",
    type: "string",
    describe: "RouterOS REST base URL, e.g. https://10.0.0.5",
    schema: v.pipe(v.string(), v.regex(/^https:\/\/[^\s/]+\/?$/, "must be https://host[:port]")),
  },
  { name: "routeros-user", type: "string", describe: "RouterOS user (group with read,write,api,rest-api)" },
  {
    name: "routeros-password-file",
    type: "string",
    describe: `File holding the RouterOS password (or env ${PASSWORD_ENV})`,
    schema: AbsolutePath,
  },
  {
    name: "routeros-ca-file",
    type: "string",
    describe: "PEM CA bundle that signed the RouterOS certificate",
    schema: AbsolutePath,
  },
  {
    name: "routeros-insecure-skip-tls-verify",
    type: "boolean",
    describe: "Do not verify the RouterOS certificate (logs a warning at every start)",
    default: false,
  },
  {
    name: "request-timeout",
    type: "string",
    describe: "Deadline of one backend request",
    default: "10s",
    schema: DurationMs,
  },
] as const satisfies readonly OptionSpec[];

/** Only the controller copies disks (snapshots, clones). */
export const COPY_TIMEOUT_OPTION = {
  name: "copy-timeout",
  type: "string",
  schema: DurationMs,
  default: "60s",
  describe:
    "Deadline of the request that copies a disk (snapshot, clone); RouterOS cuts requests at 60 s. The CO retries a copy still running; it is never sent twice",
} as const satisfies OptionSpec;

/** What building a backend reads from a mode's config. */
export type BackendConfig = ConfigOf<typeof BACKEND_ACCESS_OPTIONS> & {
  backend: "file" | "routeros";
  copyTimeout: number;
  stateDir: string;
  nvmeAddress?: string | undefined;
};

function readPassword(cfg: BackendConfig): string {
  const file = cfg.routerosPasswordFile;
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
export async function buildBackend(
  ctx: Pick<ModeContext<BackendConfig>, "config" | "runner" | "log" | "breakers">,
  nqnPrefix: string,
): Promise<{ backend: Backend; managementHost?: string }> {
  const cfg = ctx.config;
  const requestTimeoutMs = cfg.requestTimeout;
  if (cfg.backend === "file") {
    const { createFileBackend } = await import("./file/file-backend.ts");
    return {
      backend: createFileBackend({
        dir: cfg.fileDir,
        runner: ctx.runner,
        log: ctx.log,
        opTimeoutMs: requestTimeoutMs,
        copyTimeoutMs: cfg.copyTimeout,
      }),
    };
  }
  const url = cfg.routerosUrl;
  const user = cfg.routerosUser;
  if (!url) throw new Error("--routeros-url is required with --backend routeros");
  if (!user) throw new Error("--routeros-user is required with --backend routeros");
  if (cfg.routerosInsecureSkipTlsVerify) {
    ctx.log.warn(
      { url },
      "TLS certificate verification of the RouterOS REST API is OFF (--routeros-insecure-skip-tls-verify): anyone on the path can read the credentials",
    );
  }
  const caFile = cfg.routerosCaFile;
  const { createRestClient } = await import("./routeros/rest-client.ts");
  const { createRouterOsBackend } = await import("./routeros/routeros-backend.ts");
  const client = createRestClient({
    url,
    user,
    password: readPassword(cfg),
    ca: caFile ? readFileSync(caFile, "utf8") : undefined,
    insecureSkipTlsVerify: !!cfg.routerosInsecureSkipTlsVerify,
    requestTimeoutMs,
    breakers: ctx.breakers,
    log: ctx.log,
  });
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  const backend = createRouterOsBackend({
    client,
    log: ctx.log,
    nqnPrefix,
    defaultNvmeAddress: cfg.nvmeAddress ?? host,
    copyTimeoutMs: cfg.copyTimeout,
    stateDir: cfg.stateDir,
  });
  return { backend, managementHost: host };
}
