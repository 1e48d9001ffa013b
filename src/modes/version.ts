import type { Mode } from "./types.ts";

export const mode: Mode = {
  command: "version",
  logToStderr: true,
  describe: "Print the version",
  options: [],
  async run(ctx) {
    process.stdout.write(`rds-csi ${ctx.version}\n`);
    return 0;
  },
};
