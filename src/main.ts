#!/usr/bin/env bun
import { VERSION } from "./version.ts";

/**
 * Entry point. `version` answers before the CLI, gRPC, protobuf and metrics libraries are even
 * evaluated: package checks and health scripts call it often and it must be instant. Everything
 * else loads the full CLI.
 */
const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "version") {
  process.stdout.write(`rds-csi ${VERSION}\n`);
  process.exit(0);
}
const { main } = await import("./cli.ts");
main(args).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`rds-csi: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  },
);
