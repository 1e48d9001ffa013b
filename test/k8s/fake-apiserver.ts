/**
 * A loopback simulator of the part of the Kubernetes API server this driver uses. It is a test of
 * our understanding of the API, so every behaviour cites where it comes from:
 *  [auth]   https://kubernetes.io/docs/reference/access-authn-authz/authentication/ — a bearer token in
 *           `Authorization: Bearer`; a request whose token is unknown is answered 401 Unauthorized.
 *  [verbs]  https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb —
 *           GET on an item = get, on a collection = list (watch=true: watch), POST = create,
 *           PUT = update, PATCH = patch, DELETE = delete.
 *  [rbac]   https://kubernetes.io/docs/reference/access-authn-authz/rbac/ — a request is allowed when a
 *           rule of a bound (Cluster)Role lists its apiGroup, resource and verb; else 403 with a Status
 *           whose reason is Forbidden (api-concepts, "Status").
 *  [status] https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/ — errors carry a
 *           Status object {kind: Status, status: Failure, message, reason, code}; 404 reason NotFound.
 *  [chunk]  https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks —
 *           `limit` caps a page; `metadata.continue` is the token of the next page, empty on the last.
 *  [patch]  https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/ and
 *           RFC 7386 — application/merge-patch+json: objects merge, `null` deletes a key.
 *  [rv]     https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions and the API
 *           conventions' "Concurrency Control and Consistency" — every write bumps metadata.resourceVersion;
 *           a write naming a resourceVersion other than the stored one is refused 409 Conflict.
 *  [events] https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/ — events.k8s.io/v1
 *           Event is namespaced; eventTime, reportingController, reportingInstance, action, reason and type
 *           are required for new Events (422 Invalid otherwise).
 * Faults a test can switch on: answers delayed or never sent (a hung API server).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

export interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
export interface Request {
  verb: string;
  group: string;
  resource: string;
  namespace?: string;
  name?: string;
  allowed: boolean;
  user: string;
}

type Obj = Record<string, any>;

/** The rules of a ClusterRole in a manifest file (RBAC as deploy/ grants it). */
export function clusterRoleRules(file: string, name: string): Rule[] {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const o = doc.toJS() as Obj | null;
    if (o?.kind === "ClusterRole" && o.metadata?.name === name) return o.rules as Rule[];
  }
  throw new Error(`no ClusterRole ${name} in ${file}`);
}

/** A self-signed certificate for 127.0.0.1 made with openssl (the CA is the certificate itself). */
export function selfSignedCert(): { cert: string; key: string } {
  const dir = mkdtempSync("/tmp/fake-apiserver-tls-");
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=fake-apiserver",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
      ],
      { stdio: "ignore" },
    );
    return { cert: readFileSync(join(dir, "cert.pem"), "utf8"), key: readFileSync(join(dir, "key.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const RESOURCES: Record<string, { group: string; namespaced: boolean }> = {
  persistentvolumes: { group: "", namespaced: false },
  nodes: { group: "", namespaced: false },
  volumeattachments: { group: "storage.k8s.io", namespaced: false },
  events: { group: "events.k8s.io", namespaced: true },
};

function mergePatch(target: any, patch: any): any {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out = target && typeof target === "object" && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

export interface FakeApiServer {
  url: string;
  ca: string;
  /** Every request seen, with the RBAC verb it needed and whether it was allowed. */
  requests: Request[];
  /** Objects by resource, then by "namespace/name" ("" namespace for cluster-scoped). */
  put(resource: string, obj: Obj): Obj;
  get(resource: string, name: string, namespace?: string): Obj | undefined;
  list(resource: string): Obj[];
  remove(resource: string, name: string): void;
  /** Milliseconds every answer waits; Infinity: never answer. */
  delayMs: number;
  /** Writes a kubeconfig for this server and token; returns its path. */
  kubeconfig(dir: string, token: string): string;
  stop(): void;
}

export function startFakeApiServer(opts: { users: Record<string, Rule[]> }): FakeApiServer {
  const { cert, key } = selfSignedCert();
  const store = new Map<string, Map<string, Obj>>();
  let rv = 1000;
  const requests: Request[] = [];
  const bucket = (r: string) => store.get(r) ?? store.set(r, new Map()).get(r)!;
  const status = (code: number, reason: string, message: string) =>
    Response.json({ kind: "Status", apiVersion: "v1", status: "Failure", message, reason, code }, { status: code });

  const allowedBy = (rules: Rule[], group: string, resource: string, verb: string) =>
    rules.some(
      (r) =>
        (r.apiGroups.includes(group) || r.apiGroups.includes("*")) &&
        (r.resources.includes(resource) || r.resources.includes("*")) &&
        (r.verbs.includes(verb) || r.verbs.includes("*")),
    );

  const pending = new Set<() => void>();
  const api: FakeApiServer = {
    url: "",
    ca: cert,
    requests,
    delayMs: 0,
    put(resource, obj) {
      const ns = obj.metadata?.namespace ?? "";
      const stored = {
        ...obj,
        metadata: { ...obj.metadata, resourceVersion: String(++rv), uid: obj.metadata?.uid ?? crypto.randomUUID() },
      };
      bucket(resource).set(`${ns}/${obj.metadata.name}`, stored);
      return stored;
    },
    get: (resource, name, namespace = "") => bucket(resource).get(`${namespace}/${name}`),
    list: (resource) => [...bucket(resource).values()],
    remove: (resource, name) => void bucket(resource).delete(`/${name}`),
    kubeconfig(dir, token) {
      const path = join(dir, "kubeconfig");
      writeFileSync(
        path,
        [
          "apiVersion: v1",
          "kind: Config",
          "current-context: fake",
          "clusters:",
          "- name: fake",
          "  cluster:",
          `    server: ${api.url}`,
          `    certificate-authority-data: ${Buffer.from(cert).toString("base64")}`,
          "users:",
          "- name: u",
          "  user:",
          `    token: ${token}`,
          "contexts:",
          "- name: fake",
          "  context:",
          "    cluster: fake",
          "    user: u",
          "",
        ].join("\n"),
      );
      return path;
    },
    stop() {
      for (const release of pending) release();
      server.stop(true);
    },
  };

  async function handle(req: Request_, url: URL): Promise<Response> {
    // [auth]
    const token = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
    const rules = token !== undefined ? opts.users[token] : undefined;
    if (!rules) return status(401, "Unauthorized", "Unauthorized");
    // /api/v1/<res>[/<name>] | /apis/<group>/v1/[namespaces/<ns>/]<res>[/<name>]
    const m = /^\/(?:api\/v1|apis\/([^/]+)\/v1)\/(?:namespaces\/([^/]+)\/)?([a-z]+)(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m || !RESOURCES[m[3]!])
      return status(404, "NotFound", `the server could not find the requested resource ${url.pathname}`);
    const [, groupRaw, ns, resource, nameRaw] = m;
    const group = groupRaw ?? "";
    const name = nameRaw ? decodeURIComponent(nameRaw) : undefined;
    if (RESOURCES[resource!]!.group !== group) return status(404, "NotFound", `no ${resource} in group ${group}`);
    // [verbs]
    const verb =
      req.method === "GET"
        ? name
          ? "get"
          : url.searchParams.get("watch") === "true"
            ? "watch"
            : "list"
        : (({ POST: "create", PUT: "update", PATCH: "patch", DELETE: "delete" } as Record<string, string>)[
            req.method
          ] ?? "unknown");
    const allowed = allowedBy(rules, group, resource!, verb);
    requests.push({
      verb,
      group,
      resource: resource!,
      ...(ns ? { namespace: ns } : {}),
      ...(name ? { name } : {}),
      allowed,
      user: token!,
    });
    // [rbac]
    if (!allowed)
      return status(
        403,
        "Forbidden",
        `${resource}${group ? `.${group}` : ""} is forbidden: User cannot ${verb} resource "${resource}" in API group "${group}"`,
      );
    const b = bucket(resource!);
    const key = `${ns ?? ""}/${name}`;
    if (verb === "get") {
      const o = b.get(key);
      return o ? Response.json(o) : status(404, "NotFound", `${resource} "${name}" not found`); // [status]
    }
    if (verb === "list") {
      // [chunk]
      const all = [...b.values()].filter((o) => !ns || o.metadata.namespace === ns);
      const limit = Number(url.searchParams.get("limit") ?? 0) || all.length;
      const start = Number(url.searchParams.get("continue") ?? 0);
      const items = all.slice(start, start + limit);
      const next = start + limit < all.length ? String(start + limit) : "";
      return Response.json({
        kind: "List",
        apiVersion: "v1",
        metadata: { resourceVersion: String(rv), ...(next ? { continue: next } : {}) },
        items,
      });
    }
    if (verb === "patch") {
      const o = b.get(key);
      if (!o) return status(404, "NotFound", `${resource} "${name}" not found`);
      if (req.headers.get("content-type") !== "application/merge-patch+json")
        return status(415, "UnsupportedMediaType", "only merge patches are simulated");
      const patch = (await req.json()) as Obj;
      // [rv]
      const want = patch.metadata?.resourceVersion;
      if (want !== undefined && want !== o.metadata.resourceVersion) {
        return status(
          409,
          "Conflict",
          `Operation cannot be fulfilled on ${resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        );
      }
      // [patch]
      const merged = mergePatch(o, patch);
      merged.metadata = { ...merged.metadata, resourceVersion: String(++rv) };
      b.set(key, merged);
      return Response.json(merged);
    }
    if (verb === "create") {
      const o = (await req.json()) as Obj;
      // [events]
      if (resource === "events") {
        const missing = ["eventTime", "reportingController", "reportingInstance", "action", "reason", "type"].filter(
          (f) => !o[f],
        );
        if (missing.length) return status(422, "Invalid", `Event is invalid: ${missing.join(", ")}: Required value`);
      }
      if (!o.metadata?.name) return status(422, "Invalid", "metadata.name: Required value");
      if (b.has(`${ns ?? ""}/${o.metadata.name}`))
        return status(409, "AlreadyExists", `${resource} "${o.metadata.name}" already exists`);
      return Response.json(
        api.put(resource!, { ...o, metadata: { ...o.metadata, ...(ns ? { namespace: ns } : {}) } }),
        { status: 201 },
      );
    }
    return status(405, "MethodNotAllowed", `${verb} is not simulated`);
  }
  type Request_ = globalThis.Request;

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert, key },
    async fetch(req) {
      if (api.delayMs > 0) {
        await new Promise<void>((resolve) => {
          const release = () => {
            pending.delete(release);
            resolve();
          };
          pending.add(release);
          if (Number.isFinite(api.delayMs)) setTimeout(release, api.delayMs);
        });
      }
      return handle(req, new URL(req.url));
    },
  });
  api.url = `https://127.0.0.1:${server.port}`;
  return api;
}
