import type { Mode } from "./types.ts";

/**
 * Every mode of the binary, each behind its own dynamic import: a process loads only the mode it
 * runs (the build splits chunks, so csi-node never evaluates — or even maps — the controller's
 * backends, gc or doctor, and gc/doctor never load gRPC). main.ts builds the CLI from these.
 */
// Each mode is typed by its own config; the CLI hands every one the config its own options parsed into.
const LOADERS: Record<string, () => Promise<Mode<any>>> = {
  breaker: async () => (await import("./breaker.ts")).mode,
  "csi-controller": async () => (await import("./csi-controller.ts")).mode,
  "csi-node": async () => (await import("./csi-node.ts")).mode,
  doctor: async () => (await import("./doctor.ts")).mode,
  gc: async () => (await import("./gc.ts")).mode,
  version: async () => (await import("./version.ts")).mode,
};

export const MODE_NAMES: readonly string[] = Object.keys(LOADERS);

/** The named mode alone when `first` names one; otherwise all of them (top-level help, a typo to correct). */
export async function loadModes(first?: string): Promise<Mode[]> {
  const load = first !== undefined ? LOADERS[first] : undefined;
  if (load) return [await load()];
  return Promise.all(Object.values(LOADERS).map((l) => l()));
}
