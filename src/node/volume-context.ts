import { posix } from "node:path";
import { invalidArgument } from "../runtime/errors.ts";
import { nqnProblem } from "../config/nqn.ts";
import type { VolumeTarget } from "./connector.ts";

/**
 * volume_context → VolumeTarget. Keys are the Go driver's (nqn, nvmeAddress, nvmePort,
 * ctrlLossTmo, reconnectDelay, keepAliveTmo) so its PVs keep working, plus ours: transport
 * ("nvme-tcp" when absent) and backingFile for transport=loop.
 */
export function parseVolumeContext(
  volumeId: string,
  ctx: Record<string, string> | undefined,
  opts: { fileDir: string },
): VolumeTarget {
  const c = ctx ?? {};
  const field = (k: string) => `volume_context.${k}`;
  const transport = c.transport ?? "nvme-tcp";
  if (transport === "loop") {
    const file = c.backingFile;
    if (!file) throw invalidArgument(field("backingFile"), "is required for transport=loop");
    // Only the file backend's own disks: any other file on the host would be formatted and mounted.
    const dir = posix.normalize(opts.fileDir).replace(/\/+$/, "");
    if (posix.dirname(file) !== dir || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.img$/.test(posix.basename(file))) {
      throw invalidArgument(
        field("backingFile"),
        `must be a <name>.img file directly in the file backend's directory ${dir}, got ${JSON.stringify(file)}`,
      );
    }
    return { volumeId, transport, backingFile: file };
  }
  if (transport !== "nvme-tcp")
    throw invalidArgument(field("transport"), `must be "nvme-tcp" or "loop", got ${JSON.stringify(transport)}`);
  const nqn = c.nqn;
  if (!nqn) throw invalidArgument(field("nqn"), "is required");
  const bad = nqnProblem(nqn);
  if (bad) throw invalidArgument(field("nqn"), bad);
  const address = c.nvmeAddress;
  if (!address) throw invalidArgument(field("nvmeAddress"), "is required");
  if (!/^[0-9A-Za-z.:%_-]+$/.test(address))
    throw invalidArgument(field("nvmeAddress"), `is not an address: ${JSON.stringify(address)}`);
  const int = (k: string, dflt: number, min: number, max: number) => {
    const raw = c[k];
    if (raw === undefined || raw === "") return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max)
      throw invalidArgument(field(k), `must be an integer in ${min}..${max}, got ${JSON.stringify(raw)}`);
    return n;
  };
  return {
    volumeId,
    transport,
    nqn,
    address,
    port: int("nvmePort", 4420, 1, 65535),
    ctrlLossTmo: int("ctrlLossTmo", -1, -1, 2 ** 31 - 1),
    reconnectDelay: int("reconnectDelay", 5, 1, 2 ** 31 - 1),
    keepAliveTmo: int("keepAliveTmo", 0, 0, 2 ** 31 - 1),
  };
}
