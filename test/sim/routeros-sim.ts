import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DiskExporter } from "./real-export.ts";

/**
 * A RouterOS 7 REST look-alike over HTTPS on 127.0.0.1, covering the surface the routeros backend
 * uses (/disk, /file, /system/resource) with RouterOS habits: every value a string, ids like `*1A`,
 * PUT=add, PATCH=set, DELETE=remove, 400 `{error,message,detail}` on unknown fields or duplicate
 * slots, a file table separate from the disk table, a pool whose free space is what the files use,
 * and copies that take time. Faults are injected per method and path.
 *
 * Sources (see shared/reference/routeros.md, "What MikroTik's documentation says"):
 * - REST API page (help.mikrotik.com, Developer Guides): verbs, string values, `{error,message,detail}`,
 *   and "a command that runs longer than 60 s is cut with 400 Session closed" (the command may still run).
 * - `/disk` CLI reference (manual.mikrotik.com cli-reference/disk): settable `type slot file-path
 *   file-size nvme-tcp-*`; read-only `size free mount-point`. It does NOT list `comment`,
 *   `creation-time` or `status`: each is a mode here (`fields`), present by default as on the units the
 *   Go driver ran against, absent to model a router that matches the reference only.
 * - Files page (help.mikrotik.com ROS/Files, 7.16 example): `/file` rows have `name type size last-modified`.
 * - Duplicate wording is not documented; public REST clients report `failure: already have such …`
 *   (reference), which is the default here; `duplicateDetail` gives the other wordings.
 * - `copy-from` is the generic "item number" add parameter; REST adds are synchronous, so the PUT
 *   answers when the copy has finished (or at the 60 s cut). Nothing documents when the copy's row
 *   appears: here it appears at once, its `/file` entry at size 0 until the data is there.
 */

/**
 * - hang: no answer at all, on one method/path while the others answer (issue 11: `/rest/disk` hung
 *   while `/rest/system/resource` answered, and a healthy Probe hid it).
 * - lost-response: the request is applied, the connection drops before the answer.
 * - session-closed: the request is applied, then `400 Session closed` (REST API page: the router's own
 *   cut; "the command may still have run").
 */
export type FaultKind = "latency" | "hang" | "status" | "reset" | "lost-response" | "session-closed" | "pool-full";

export interface FaultSpec {
  kind: FaultKind;
  method?: string;
  /** Matches when the request path (without query) starts with this string, or matches the RegExp. */
  path?: string | RegExp;
  /** latency: delay before handling; status: HTTP status to answer (default 500). */
  ms?: number;
  status?: number;
  /** How many matching requests it applies to; default unlimited. */
  times?: number;
}

export interface SimOptions {
  user?: string;
  password?: string;
  poolBytes?: number;
  poolMount?: string;
  /** How long a copy-from takes. */
  copyMs?: number;
  /** RouterOS cuts a request that runs longer than this with 400 "Session closed" (REST API page: 60 s). */
  serverTimeoutMs?: number;
  /**
   * Which of the fields the `/disk` reference does not list the router has (default: all). Without
   * `comment`, an add/set naming it is refused with `unknown parameter comment`.
   */
  fields?: { comment?: boolean; creationTime?: boolean; status?: boolean };
  /** `/file` rows carry `last-modified` (Files page); false models a router that shows no time. */
  fileTimes?: boolean;
  /**
   * When a copy's `/disk` row appears: at once (default) or only when its data is there. The docs say
   * neither; issue 11's fake, written from the docs alone, showed it late, and that is when a second
   * `copy-from` is tempting.
   */
  copyRowAppears?: "at-once" | "when-done";
  /** Detail of the 400 answering an add of an existing slot (default RouterOS's `failure: already have such slot`). */
  duplicateDetail?: string;
  /** Real export mode (real-export.ts): rows with nvme-tcp-export become kernel NVMe/TCP targets. */
  exporter?: DiskExporter;
}

type Row = Record<string, string>;

export interface RouterOsSim {
  url: string;
  address: string;
  caFile: string;
  user: string;
  password: string;
  faults: {
    add(f: FaultSpec): () => void;
    clear(): void;
  };
  state: {
    disks(): Row[];
    files(): Row[];
    requests(): { method: string; path: string; status: number | "reset" | "hang" }[];
    setPoolBytes(n: number): void;
    /** Adds a disk the way the Go driver (or an operator) would have, bypassing REST. */
    seedDisk(fields: Row): Row;
    poolFree(): number;
  };
  close(): Promise<void>;
}

const DISK_FIELDS = new Set([
  "type",
  "file-path",
  "file-size",
  "slot",
  "nvme-tcp-export",
  "nvme-tcp-server-port",
  "nvme-tcp-server-nqn",
  "nvme-tcp-server-allow-host-name",
  "nvme-tcp-server-password",
  "copy-from",
  "comment",
]);
const SET_FIELDS = new Set([
  "file-size",
  "nvme-tcp-export",
  "nvme-tcp-server-allow-host-name",
  "nvme-tcp-server-password",
  "comment",
  "nvme-tcp-server-port",
]);

/** Bytes from RouterOS size syntax: plain bytes or a K/M/G/T (binary) suffix. */
function parseSize(s: string): number | null {
  const m = /^(\d+)([KMGT]?)$/i.exec(s.trim());
  if (!m) return null;
  const mult = { "": 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }[m[2]!.toUpperCase() as "" | "K"]!;
  return Number(m[1]) * mult;
}

function makeCert(dir: string) {
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    { stdio: "ignore", timeout: 30_000 },
  );
  return { key, cert };
}

export async function startRouterOsSim(opts: SimOptions = {}): Promise<RouterOsSim> {
  const user = opts.user ?? "csi";
  const password = opts.password ?? "s3cret-pw";
  const poolMount = opts.poolMount ?? "storage-pool";
  const copyMs = opts.copyMs ?? 50;
  const serverTimeoutMs = opts.serverTimeoutMs ?? 60_000;
  const has = {
    comment: opts.fields?.comment ?? true,
    creationTime: opts.fields?.creationTime ?? true,
    status: opts.fields?.status ?? true,
  };
  const fileTimes = opts.fileTimes ?? true;
  const duplicateDetail = opts.duplicateDetail ?? "failure: already have such slot";
  const dir = mkdtempSync(join(tmpdir(), "routeros-sim-"));
  const { key, cert } = makeCert(dir);

  let nextId = 0x10;
  const newId = () => `*${(nextId++).toString(16).toUpperCase()}`;
  const pool: Row = {
    ".id": "*1",
    slot: poolMount,
    type: "partition",
    "mount-point": poolMount,
    size: String(opts.poolBytes ?? 2 ** 40),
    free: "0",
    ...(has.status ? { status: "ready" } : {}),
  };
  const disks: Row[] = [pool];
  const files: Row[] = [];
  const faults: (FaultSpec & { left: number })[] = [];
  const log: { method: string; path: string; status: number | "reset" | "hang" }[] = [];
  const hanging = new Set<ServerResponse>();
  const sockets = new Set<Socket>();

  const used = () => files.reduce((n, f) => n + Number(f.size), 0);
  const free = () => Number(pool.size) - used();
  const refreshPool = () => {
    pool.free = String(Math.max(0, free()));
  };
  const fileName = (filePath: string) => filePath.replace(/^\/+/, "");
  const now = () => new Date().toISOString().replace("T", " ").slice(0, 19);

  const err = (status: number, message: string, detail: string) => ({
    status,
    body: { error: status, message, detail },
  });
  const badRequest = (detail: string) => err(400, "Bad Request", detail);

  function addFile(path: string, size: number) {
    const existing = files.find((f) => f.name === fileName(path));
    if (existing) {
      existing.size = String(size);
      if (fileTimes) existing["last-modified"] = now();
      return;
    }
    files.push({
      ".id": newId(),
      name: fileName(path),
      type: ".img file",
      size: String(size),
      ...(fileTimes ? { "last-modified": now() } : {}),
    });
  }
  /** Fields the `/disk` reference does not list, only where this router has them. */
  const optional = (row: Row): Row => {
    if (!has.creationTime) delete row["creation-time"];
    if (!has.status) delete row.status;
    if (!has.comment) delete row.comment;
    return row;
  };

  function addDisk(body: Row): { status: number; body: unknown } {
    for (const k of Object.keys(body))
      if (!DISK_FIELDS.has(k) || (k === "comment" && !has.comment)) return badRequest(`unknown parameter ${k}`);
    for (const [k, v] of Object.entries(body))
      if (typeof v !== "string") return badRequest(`value of ${k} must be a string`);
    if (body.type !== "file") return badRequest("only type=file is supported here");
    if (!body.slot || !body["file-path"]) return badRequest("missing slot or file-path");
    if (disks.some((d) => d.slot === body.slot)) return badRequest(duplicateDetail);
    if (!fileName(body["file-path"]).startsWith(`${poolMount}/`))
      return badRequest("file-path is not on a storage pool");
    let size: number | null;
    let source: Row | undefined;
    if (body["copy-from"]) {
      source = disks.find((d) => d[".id"] === body["copy-from"] || d.slot === body["copy-from"]);
      if (!source || source.type !== "file") return badRequest("no such item (copy-from)");
      size = Number(source["file-size"]);
    } else {
      size = parseSize(body["file-size"] ?? "");
      if (size === null || size <= 0) return badRequest("invalid file-size");
    }
    if (size > free()) return badRequest("failure: not enough space on storage pool");
    const row: Row = optional({
      ".id": newId(),
      slot: body.slot,
      type: "file",
      "file-path": body["file-path"],
      "file-size": String(size),
      size: String(size),
      "nvme-tcp-export": body["nvme-tcp-export"] === "yes" || body["nvme-tcp-export"] === "true" ? "true" : "false",
      "nvme-tcp-server-port": body["nvme-tcp-server-port"] ?? "4420",
      "nvme-tcp-server-nqn": body["nvme-tcp-server-nqn"] ?? body.slot,
      "nvme-tcp-server-allow-host-name": body["nvme-tcp-server-allow-host-name"] ?? "",
      status: source ? "copying" : "ready",
      "creation-time": now(),
      ...(body.comment !== undefined ? { comment: body.comment } : {}),
    });
    disks.push(row);
    // A copy's data arrives while the add runs: its file is there at once, full size only when done.
    addFile(row["file-path"]!, source ? 0 : size);
    refreshPool();
    opts.exporter?.added(row, source);
    return { status: 200, body: row };
  }

  function setDisk(row: Row, body: Row): { status: number; body: unknown } {
    const before = { ...row };
    for (const k of Object.keys(body)) {
      if (k === ".id") continue;
      if (!SET_FIELDS.has(k) || (k === "comment" && !has.comment)) return badRequest(`unknown parameter ${k}`);
      if (typeof body[k] !== "string") return badRequest(`value of ${k} must be a string`);
    }
    if (body["file-size"] !== undefined) {
      const size = parseSize(body["file-size"]);
      if (size === null) return badRequest("invalid file-size");
      const cur = Number(row["file-size"]);
      if (size < cur) return badRequest("failure: shrinking is not supported");
      if (size - cur > free()) return badRequest("failure: not enough space on storage pool");
      row["file-size"] = row.size = String(size);
      addFile(row["file-path"]!, size);
    }
    for (const k of [
      "nvme-tcp-export",
      "nvme-tcp-server-allow-host-name",
      "nvme-tcp-server-password",
      "comment",
      "nvme-tcp-server-port",
    ]) {
      if (body[k] !== undefined)
        row[k] = k === "nvme-tcp-export" ? (body[k] === "yes" || body[k] === "true" ? "true" : "false") : body[k]!;
    }
    refreshPool();
    opts.exporter?.changed(row, before);
    return { status: 200, body: row };
  }

  const matches = (row: Row, q: URLSearchParams) =>
    [...q.entries()].every(([k, v]) => k.startsWith(".proplist") || row[k] === v);

  /** Applies the request to the state; returns the answer. Pure with respect to the socket. */
  function handle(
    method: string,
    path: string,
    q: URLSearchParams,
    body: Row | undefined,
  ): { status: number; body?: unknown } {
    const parts = path.split("/").filter(Boolean); // ["rest", "disk", "*1A"]
    if (parts[0] !== "rest") return err(404, "Not Found", "no such command prefix");
    const [, menu, ...rest] = parts;
    const id = rest.length ? decodeURIComponent(rest.join("/")) : undefined;
    if (menu === "system" && id === "resource" && method === "GET") {
      return {
        status: 200,
        body: { uptime: "1d2h", version: "7.16 (stable)", "board-name": "RDS2216", platform: "MikroTik" },
      };
    }
    const table = menu === "disk" ? disks : menu === "file" ? files : undefined;
    if (!table) return err(404, "Not Found", "no such command prefix");
    if (method === "GET") {
      if (id === undefined) return { status: 200, body: table.filter((r) => matches(r, q)) };
      const row = table.find((r) => r[".id"] === id);
      return row ? { status: 200, body: row } : err(404, "Not Found", "no such item");
    }
    if (method === "PUT" && menu === "disk" && id === undefined) return addDisk(body ?? {});
    if (method === "PATCH" && menu === "disk" && id !== undefined) {
      const row = disks.find((r) => r[".id"] === id);
      return row ? setDisk(row, body ?? {}) : err(404, "Not Found", "no such item");
    }
    if (method === "DELETE" && id !== undefined) {
      const i = table.findIndex((r) => r[".id"] === id);
      if (i < 0) return err(404, "Not Found", "no such item");
      if (table === disks && table[i] === pool) return badRequest("cannot remove storage pool");
      if (table === disks) opts.exporter?.removed(table[i]!);
      table.splice(i, 1);
      refreshPool();
      return { status: 204 };
    }
    return badRequest(`unsupported ${method} on ${path}`);
  }

  function takeFault(method: string, path: string): FaultSpec | undefined {
    const f = faults.find(
      (x) =>
        x.left > 0 &&
        (!x.method || x.method === method) &&
        (!x.path || (typeof x.path === "string" ? path.startsWith(x.path) : x.path.test(path))),
    );
    if (f) f.left--;
    return f;
  }

  const send = (res: ServerResponse, status: number, body?: unknown) => {
    if (res.destroyed || res.writableEnded) return;
    if (status === 204 || body === undefined) {
      res.writeHead(status);
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };

  async function serve(req: IncomingMessage, res: ServerResponse) {
    const method = req.method ?? "GET";
    const u = new URL(req.url ?? "/", "https://127.0.0.1");
    const entry = { method, path: u.pathname + u.search, status: 0 as number | "reset" | "hang" };
    log.push(entry);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const auth = req.headers.authorization ?? "";
    const expected = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
    if (auth !== expected) {
      entry.status = 401;
      return send(res, 401, { error: 401, message: "Unauthorized" });
    }
    let body: Row | undefined;
    if (chunks.length) {
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        entry.status = 400;
        return send(res, 400, { error: 400, message: "Bad Request", detail: "JSON parse error" });
      }
    }
    const fault = takeFault(method, u.pathname);
    if (fault?.kind === "latency") await new Promise((r) => setTimeout(r, fault.ms ?? 1000));
    if (fault?.kind === "hang") {
      entry.status = "hang";
      hanging.add(res);
      return;
    }
    if (fault?.kind === "reset") {
      entry.status = "reset";
      req.socket.destroy();
      return;
    }
    if (fault?.kind === "status") {
      const s = fault.status ?? 500;
      entry.status = s;
      return send(res, s, {
        error: s,
        message: s >= 500 ? "Internal Server Error" : "Bad Request",
        detail: "injected fault",
      });
    }
    if (fault?.kind === "pool-full" && (method === "PUT" || method === "PATCH")) {
      entry.status = 400;
      return send(res, 400, {
        error: 400,
        message: "Bad Request",
        detail: "failure: not enough space on storage pool",
      });
    }
    const answer = handle(method, u.pathname, u.searchParams, body);
    const created = method === "PUT" && answer.status === 200 ? (answer.body as Row) : undefined;
    if (created && body?.["copy-from"]) {
      // The add is synchronous: it answers when the copy is done, or at the router's own cut (REST API
      // page: 60 s, `400 Session closed`), after which the copy still finishes.
      const late = opts.copyRowAppears === "when-done";
      if (late) disks.splice(disks.indexOf(created), 1);
      const done = new Promise<void>((r) =>
        setTimeout(() => {
          if (late) disks.push(created);
          const row = disks.find((d) => d[".id"] === created[".id"]);
          if (row) {
            if (has.status) row.status = "ready";
            addFile(row["file-path"]!, Number(row["file-size"]));
          }
          r();
        }, copyMs),
      );
      const timedOut = await Promise.race([
        done.then(() => false),
        new Promise<boolean>((r) => setTimeout(() => r(true), serverTimeoutMs)),
      ]);
      if (timedOut) {
        entry.status = 400;
        return send(res, 400, { error: 400, message: "Bad Request", detail: "Session closed" });
      }
    }
    if (fault?.kind === "lost-response") {
      entry.status = "reset";
      req.socket.destroy();
      return;
    }
    if (fault?.kind === "session-closed") {
      entry.status = 400;
      return send(res, 400, { error: 400, message: "Bad Request", detail: "Session closed" });
    }
    entry.status = answer.status;
    send(res, answer.status, answer.body);
  }

  const server: Server = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    serve(req, res).catch((e) => send(res, 500, { error: 500, message: "Internal Server Error", detail: String(e) }));
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("secureConnection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  refreshPool();

  return {
    url: `https://127.0.0.1:${port}`,
    address: `127.0.0.1:${port}`,
    caFile: cert,
    user,
    password,
    faults: {
      add(f) {
        const entry = { ...f, left: f.times ?? Number.POSITIVE_INFINITY };
        faults.push(entry);
        return () => {
          const i = faults.indexOf(entry);
          if (i >= 0) faults.splice(i, 1);
        };
      },
      clear() {
        faults.length = 0;
      },
    },
    state: {
      disks: () => disks.filter((d) => d !== pool).map((d) => ({ ...d })),
      files: () => files.map((f) => ({ ...f })),
      requests: () => log.map((e) => ({ ...e })),
      setPoolBytes(n) {
        pool.size = String(n);
        refreshPool();
      },
      seedDisk(fields) {
        const row: Row = optional({
          ".id": newId(),
          type: "file",
          status: "ready",
          "creation-time": now(),
          "nvme-tcp-server-allow-host-name": "",
          ...fields,
        });
        disks.push(row);
        if (row["file-path"]) addFile(row["file-path"], Number(row["file-size"] ?? 0));
        refreshPool();
        opts.exporter?.added(row);
        return { ...row };
      },
      poolFree: () => free(),
    },
    async close() {
      for (const r of hanging) r.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
