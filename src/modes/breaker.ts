import { adminRequest, adminSocketPath } from "../runtime/admin.ts";
import type { BreakerInfo } from "../runtime/breakers.ts";
import type { ConfigOf, OptionSpec } from "../config/option-spec.ts";
import type { COMMON_OPTIONS } from "../config/options.ts";
import type { Mode } from "./types.ts";

const OPTIONS = [
  {
    name: "admin-socket",
    type: "string",
    describe: "Admin socket of the running process (default: <state-dir>/admin.sock, the csi-node's)",
  },
  { name: "json", type: "boolean", describe: "Print JSON", default: false },
] as const satisfies readonly OptionSpec[];

type BreakerConfig = ConfigOf<[...typeof COMMON_OPTIONS, ...typeof OPTIONS]>;

/** Talks to a running csi-node / csi-controller through its admin socket. */
export const mode: Mode<BreakerConfig> = {
  command: "breaker",
  logToStderr: true,
  positional: "<action> [key]",
  describe: "List or reset circuit breakers of a running rds-csi process (action: list | reset <key>)",
  options: OPTIONS,
  async run(ctx) {
    const [action, key] = ctx.positionals;
    const socket = ctx.config.adminSocket ?? adminSocketPath(ctx.config.stateDir);
    try {
      if (action === "list") {
        const { body } = await adminRequest<BreakerInfo[]>(socket, "/breakers");
        if (ctx.config.json) process.stdout.write(JSON.stringify(body, null, 2) + "\n");
        else if (body.length === 0) process.stdout.write("no breakers have been used\n");
        else {
          process.stdout.write(`${"KEY".padEnd(48)} ${"STATE".padEnd(9)} FAILURES  OPEN UNTIL\n`);
          for (const b of body) {
            process.stdout.write(
              `${b.key.padEnd(48)} ${b.state.padEnd(9)} ${String(b.failures).padEnd(9)} ${b.openUntil ? new Date(b.openUntil).toISOString() : "-"}\n`,
            );
          }
        }
        return 0;
      }
      if (action === "reset") {
        if (!key) {
          process.stderr.write("breaker reset: missing <key> (e.g. volume:pvc-…)\n");
          return 2;
        }
        const { status } = await adminRequest(socket, `/breakers/reset?key=${encodeURIComponent(key)}`, {
          method: "POST",
        });
        if (status === 404) {
          process.stderr.write(`breaker ${key}: not known to the running process (nothing to reset)\n`);
          return 1;
        }
        process.stdout.write(`breaker ${key}: reset\n`);
        return 0;
      }
      process.stderr.write(`breaker: unknown action ${JSON.stringify(action)}; use list or reset <key>\n`);
      return 2;
    } catch (e) {
      process.stderr.write(`breaker: cannot reach the admin socket ${socket}: ${(e as Error).message}\n`);
      return 2;
    }
  },
};
