import { readFile } from "node:fs/promises";
import { withDeadline } from "../runtime/deadline.ts";
import type { KubeClient } from "../k8s/client.ts";
import { errorMessage, invalidArgument } from "../runtime/errors.ts";
import type { ReferencedFacts } from "./types.ts";

/**
 * Which volume ids PersistentVolumes still reference. A backend disk is only ever collected when
 * this is known: "could not ask" must never read as "nobody references it".
 */

/** Ids from a file: one per line or comma/space separated, or a JSON array of strings. */
export function parseIdList(text: string, where: string): string[] {
  const t = text.trim();
  if (t.startsWith("[")) {
    let data: unknown;
    try {
      data = JSON.parse(t);
    } catch (e) {
      throw invalidArgument("referenced-volumes", `${where} is not valid JSON: ${errorMessage(e)}`);
    }
    if (!Array.isArray(data) || data.some((x) => typeof x !== "string"))
      throw invalidArgument("referenced-volumes", `${where} must be a JSON array of volume ids`);
    return data as string[];
  }
  return t
    .split("\n")
    .map((line) => line.replace(/#.*/, ""))
    .flatMap((line) => line.split(/[\s,]+/))
    .filter((s) => s !== "");
}

/**
 * `--referenced-volumes` values: volume ids, or `@/path` / `/path` naming a file of ids.
 * An empty list is a statement ("nothing is referenced"), distinct from not giving the option.
 */
export async function referencedFromOption(values: readonly string[], timeoutMs: number): Promise<ReferencedFacts> {
  const ids = new Set<string>();
  for (const v of values) {
    const path = v.startsWith("@") ? v.slice(1) : v.startsWith("/") ? v : null;
    if (path === null) {
      ids.add(v);
      continue;
    }
    const text = await withDeadline(`reading ${path}`, timeoutMs, () => readFile(path, "utf8")).catch((e) => {
      throw invalidArgument("referenced-volumes", `cannot read ${path}: ${errorMessage(e)}`);
    });
    for (const id of parseIdList(text, path)) ids.add(id);
  }
  return { state: "known", source: "--referenced-volumes", volumeIds: ids };
}

/** Every CSI volume handle of every PersistentVolume (any driver: protecting too much is harmless). */
export async function referencedFromKubernetes(client: KubeClient, signal?: AbortSignal): Promise<ReferencedFacts> {
  const ids = new Set<string>();
  for (const pv of await client.listPersistentVolumes(signal)) {
    const h = pv.spec?.csi?.volumeHandle;
    if (typeof h === "string" && h !== "") ids.add(h);
  }
  return { state: "known", source: `PersistentVolumes at ${client.access.server}`, volumeIds: ids };
}
