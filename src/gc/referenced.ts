import { readFile } from "node:fs/promises";
import { withDeadline } from "../runtime/deadline.ts";
import { DomainError, errorMessage, invalidArgument } from "../runtime/errors.ts";
import type { ReferencedFacts } from "./types.ts";

/**
 * Which volume ids PersistentVolumes still reference. A backend disk is only ever collected when
 * this is known: "could not ask" must never read as "nobody references it".
 */

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Ids from a file: one per line or comma/space separated, or a JSON array of strings. */
export function parseIdList(text: string, where: string): string[] {
  const t = text.trim();
  if (t.startsWith("[")) {
    let data: unknown;
    try { data = JSON.parse(t); } catch (e) { throw invalidArgument("referenced-volumes", `${where} is not valid JSON: ${errorMessage(e)}`); }
    if (!Array.isArray(data) || data.some((x) => typeof x !== "string")) throw invalidArgument("referenced-volumes", `${where} must be a JSON array of volume ids`);
    return data as string[];
  }
  return t.split("\n").map((line) => line.replace(/#.*/, "")).flatMap((line) => line.split(/[\s,]+/)).filter((s) => s !== "");
}

/**
 * `--referenced-volumes` values: volume ids, or `@/path` / `/path` naming a file of ids.
 * An empty list is a statement ("nothing is referenced"), distinct from not giving the option.
 */
export async function referencedFromOption(values: readonly string[], timeoutMs: number): Promise<ReferencedFacts> {
  const ids = new Set<string>();
  for (const v of values) {
    const path = v.startsWith("@") ? v.slice(1) : v.startsWith("/") ? v : null;
    if (path === null) { ids.add(v); continue; }
    const text = await withDeadline(`reading ${path}`, timeoutMs, () => readFile(path, "utf8")).catch((e) => {
      throw invalidArgument("referenced-volumes", `cannot read ${path}: ${errorMessage(e)}`);
    });
    for (const id of parseIdList(text, path)) ids.add(id);
  }
  return { state: "known", source: "--referenced-volumes", volumeIds: ids };
}

export interface KubernetesAccess {
  /** https://host:port (in-cluster) or any URL a test serves on loopback. */
  apiUrl: string;
  token: string;
  ca?: string;
}

/** In-cluster access from the service account, or null when not running in a pod. */
export async function inClusterAccess(env: Record<string, string | undefined> = process.env): Promise<KubernetesAccess | null> {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) return null;
  try {
    const [token, ca] = await withDeadline("reading the service account token", 2_000, () =>
      Promise.all([readFile(`${SA_DIR}/token`, "utf8"), readFile(`${SA_DIR}/ca.crt`, "utf8").catch(() => undefined)]));
    const h = host.includes(":") ? `[${host}]` : host;
    return { apiUrl: `https://${h}:${port}`, token: token.trim(), ...(ca ? { ca } : {}) };
  } catch {
    return null;
  }
}

interface PvList {
  items?: { spec?: { csi?: { volumeHandle?: unknown } } }[];
  metadata?: { continue?: string };
}

/** Every CSI volume handle of every PersistentVolume (any driver: protecting too much is harmless). */
export async function referencedFromKubernetes(access: KubernetesAccess, timeoutMs: number, signal?: AbortSignal): Promise<ReferencedFacts> {
  const ids = new Set<string>();
  await withDeadline("listing PersistentVolumes", timeoutMs, async (sig) => {
    let cont: string | undefined;
    do {
      const url = new URL("/api/v1/persistentvolumes", access.apiUrl);
      url.searchParams.set("limit", "500");
      if (cont) url.searchParams.set("continue", cont);
      const res = await fetch(url, {
        headers: { authorization: `Bearer ${access.token}`, accept: "application/json" },
        signal: sig,
        ...(access.ca ? { tls: { ca: access.ca } } : {}),
      } as RequestInit);
      if (!res.ok) throw new DomainError("unavailable", `GET ${url.pathname}: HTTP ${res.status}`);
      const body = (await res.json()) as PvList;
      for (const pv of body.items ?? []) {
        const h = pv.spec?.csi?.volumeHandle;
        if (typeof h === "string" && h !== "") ids.add(h);
      }
      cont = body.metadata?.continue || undefined;
    } while (cont);
  }, signal);
  return { state: "known", source: `PersistentVolumes at ${access.apiUrl}`, volumeIds: ids };
}
