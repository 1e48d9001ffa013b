import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { withDeadline } from "../runtime/deadline.ts";
import { errorMessage, invalidArgument } from "../runtime/errors.ts";

/**
 * How to reach the Kubernetes API: a base URL, a bearer token and the CA that signed the API
 * server's certificate. Built once, from the pod's service account or from a kubeconfig given by
 * hand; the token is a secret and is never part of an error message or a log line.
 */
export interface KubeAccess {
  server: string;
  token: string;
  ca?: string;
  /** Where the access came from, for logs ("in-cluster", "kubeconfig /path (context x)"). */
  source: string;
}

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
const READ_TIMEOUT_MS = 2_000;

const readText = (path: string) => withDeadline(`reading ${path}`, READ_TIMEOUT_MS, () => readFile(path, "utf8"));

/**
 * In-cluster access, as client-go's rest.InClusterConfig builds it: KUBERNETES_SERVICE_HOST/PORT,
 * the projected token and ca.crt of the service account. Null when not running in a pod.
 */
export async function inClusterAccess(
  env: Record<string, string | undefined> = process.env,
  saDir = SERVICE_ACCOUNT_DIR,
): Promise<KubeAccess | null> {
  const host = env.KUBERNETES_SERVICE_HOST;
  if (!host) return null;
  const port = env.KUBERNETES_SERVICE_PORT || "443";
  try {
    const [token, ca] = await Promise.all([
      readText(join(saDir, "token")),
      readText(join(saDir, "ca.crt")).catch(() => undefined),
    ]);
    const h = host.includes(":") ? `[${host}]` : host;
    return {
      server: `https://${h}:${port}`,
      token: token.trim(),
      ...(ca ? { ca } : {}),
      source: "in-cluster service account",
    };
  } catch {
    return null;
  }
}

interface KubeconfigDoc {
  "current-context"?: string;
  contexts?: { name: string; context?: { cluster?: string; user?: string } }[];
  clusters?: {
    name: string;
    cluster?: { server?: string; "certificate-authority"?: string; "certificate-authority-data"?: string };
  }[];
  users?: { name: string; user?: { token?: string; tokenFile?: string } }[];
}

/**
 * Access from a kubeconfig (for running gc, doctor or a daemon by hand): the current context's
 * cluster server and CA, and a bearer token (`token` or `tokenFile`). Client certificates and exec
 * plugins are not supported; the error says so instead of connecting without credentials.
 */
export async function kubeconfigAccess(path: string): Promise<KubeAccess> {
  const bad = (msg: string) => invalidArgument("kubeconfig", `${path}: ${msg}`);
  let doc: KubeconfigDoc;
  let text: string;
  try {
    text = await readText(path);
  } catch (e) {
    throw bad(`cannot read it: ${errorMessage(e)}`);
  }
  try {
    doc = parseYaml(text) as KubeconfigDoc;
  } catch (e) {
    // The parser's message quotes the offending source line, which may be the token: only the line number goes out.
    const line = (e as { linePos?: { line: number }[] }).linePos?.[0]?.line;
    throw bad(`is not valid YAML${line ? ` (line ${line})` : ""}`);
  }
  if (!doc || typeof doc !== "object") throw bad("is not a kubeconfig");
  const ctxName = doc["current-context"];
  const ctx = doc.contexts?.find((c) => c.name === ctxName)?.context;
  if (!ctx) throw bad(`current-context ${JSON.stringify(ctxName ?? "")} is not among its contexts`);
  const cluster = doc.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  if (!cluster?.server) throw bad(`cluster ${JSON.stringify(ctx.cluster ?? "")} has no server`);
  if (!/^https:\/\//.test(cluster.server)) throw bad(`server ${JSON.stringify(cluster.server)} is not https://`);
  const user = doc.users?.find((u) => u.name === ctx.user)?.user;
  const rel = (p: string) => (isAbsolute(p) ? p : join(dirname(path), p));
  let token = user?.token;
  if (!token && user?.tokenFile)
    token = (
      await readText(rel(user.tokenFile)).catch((e) => {
        throw bad(`tokenFile: ${errorMessage(e)}`);
      })
    ).trim();
  if (!token)
    throw bad(
      `user ${JSON.stringify(ctx.user ?? "")} has no token or tokenFile (client certificates and exec plugins are not supported)`,
    );
  let ca: string | undefined;
  if (cluster["certificate-authority-data"])
    ca = Buffer.from(cluster["certificate-authority-data"], "base64").toString("utf8");
  else if (cluster["certificate-authority"])
    ca = await readText(rel(cluster["certificate-authority"])).catch((e) => {
      throw bad(`certificate-authority: ${errorMessage(e)}`);
    });
  return {
    server: cluster.server.replace(/\/+$/, ""),
    token,
    ...(ca ? { ca } : {}),
    source: `kubeconfig ${path} (context ${ctxName})`,
  };
}

/** --kubeconfig when given, else in-cluster, else null (no API: callers keep their API-less behaviour). */
export async function resolveAccess(
  kubeconfig: string | undefined,
  env: Record<string, string | undefined> = process.env,
): Promise<KubeAccess | null> {
  if (kubeconfig) return kubeconfigAccess(kubeconfig);
  return inClusterAccess(env);
}
