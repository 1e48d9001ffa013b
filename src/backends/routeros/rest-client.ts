import type { BreakerRegistry } from "../../runtime/breakers.ts";
import { withDeadline, sleep } from "../../runtime/deadline.ts";
import { DeadlineError, DomainError, errorMessage, unavailable } from "../../runtime/errors.ts";
import type { Logger } from "../../runtime/log.ts";

export interface RestClientOptions {
  /** `https://host[:port]`; `/rest` is appended. */
  url: string;
  user: string;
  password: string;
  /** PEM text of the CA that signed the RouterOS certificate. */
  ca?: string;
  insecureSkipTlsVerify?: boolean;
  requestTimeoutMs: number;
  breakers: BreakerRegistry;
  log: Logger;
  /** Attempts for reads (writes get exactly one). */
  readAttempts?: number;
  backoffBaseMs?: number;
}

export type Row = Record<string, string>;

/** RouterOS refused the request (4xx): the state is known not to have changed. */
export class RestError extends Error {
  override readonly name = "RestError";
  constructor(
    readonly status: number,
    readonly detail: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A write whose effect is unknown: the request timed out, the connection dropped or the server
 * answered 5xx. The caller must read the state back and decide; it must not repeat the write blindly.
 */
export class OutcomeUnknownError extends DomainError {
  constructor(what: string, cause: string) {
    super("unavailable", `${what}: outcome unknown (${cause}); RouterOS may or may not have applied it`);
  }
}

type Answer = { status: number; body: unknown };

export interface RestClient {
  readonly address: string;
  get<T = Row[]>(path: string, query?: Record<string, string>, signal?: AbortSignal): Promise<T>;
  /** `timeoutMs` given = a request expected to outlive its deadline (a copy): its timeout is not a failure. */
  put(path: string, body: Row, signal?: AbortSignal, timeoutMs?: number): Promise<Row>;
  patch(path: string, body: Row, signal?: AbortSignal): Promise<Row>;
  remove(path: string, signal?: AbortSignal): Promise<void>;
}

/** Unreachable, timed out, reset or 5xx: a health signal for the breaker and a reason to retry reads. */
class TransportFailure extends Error {
  constructor(
    message: string,
    readonly timedOut = false,
  ) {
    super(message);
  }
}

/** `GET disk`, `DELETE file`, `GET system/resource`: the method and menu, without item ids or query. */
export const callKind = (method: string, path: string) =>
  `${method} ${path
    .split("?")[0]!
    .split("/")
    .filter((seg) => seg && !/^(\*|%2A)/i.test(seg))
    .join("/")}`;

/**
 * The REST API page: a command that runs longer than 60 s is cut with `400 {"detail":"Session
 * closed"}` — the command may still have run, so this is an unknown outcome, not a refusal.
 */
const isSessionClosed = (a: Answer) =>
  a.status === 400 &&
  !!a.body &&
  typeof a.body === "object" &&
  /session closed/i.test(String((a.body as { detail?: unknown }).detail ?? ""));

export function createRestClient(opts: RestClientOptions): RestClient {
  const base = new URL(opts.url);
  if (base.protocol !== "https:")
    throw new DomainError("invalid-argument", `routeros-url must be https (got ${base.protocol})`, "routeros-url");
  const address = base.host;
  const breakerKey = `backend:${address}`;
  const auth = `Basic ${Buffer.from(`${opts.user}:${opts.password}`).toString("base64")}`;
  const attempts = opts.readAttempts ?? 3;
  const backoffMs = opts.backoffBaseMs ?? 200;
  const log = opts.log.child({ backend: "routeros", address });
  const tls = { rejectUnauthorized: !opts.insecureSkipTlsVerify, ...(opts.ca ? { ca: opts.ca } : {}) };

  /** One HTTP exchange with a deadline; never retried here. */
  async function exchange(
    method: string,
    path: string,
    body: Row | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Answer> {
    const url = new URL(`/rest/${path}`, base);
    const what = `RouterOS ${method} /rest/${path.split("?")[0]}`;
    const started = performance.now();
    try {
      return await withDeadline(
        what,
        timeoutMs,
        async (sig) => {
          const res = await fetch(url, {
            method,
            headers: { authorization: auth, ...(body ? { "content-type": "application/json" } : {}) },
            body: body ? JSON.stringify(body) : undefined,
            signal: sig,
            // A fresh connection per request: on a reused one, the HTTP client silently re-sends a
            // request whose connection dropped, and a re-sent add is exactly the blind retry we forbid.
            keepalive: false,
            tls,
          } as RequestInit);
          const text = await res.text();
          let parsed: unknown = undefined;
          if (text) {
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = text;
            }
          }
          log.debug(
            { method, path: url.pathname, status: res.status, duration_ms: Math.round(performance.now() - started) },
            "routeros request",
          );
          return { status: res.status, body: parsed };
        },
        signal,
      );
    } catch (e) {
      if (signal?.aborted) throw e;
      log.warn(
        { method, path: url.pathname, duration_ms: Math.round(performance.now() - started), err: errorMessage(e) },
        "routeros request failed",
      );
      throw new TransportFailure(`${what}: ${errorMessage(e)}`, e instanceof DeadlineError);
    }
  }

  /**
   * 5xx, transport failures and the router's own "Session closed" cut throw (they count for the
   * breaker, per kind of call: one endpoint answering does not hide another that hangs); other 4xx
   * come back as answers.
   */
  async function guarded(
    method: string,
    path: string,
    body: Row | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
    slowIsNormal = false,
  ): Promise<Answer | TransportFailure> {
    return opts.breakers.execute(
      breakerKey,
      async () => {
        let a: Answer;
        try {
          a = await exchange(method, path, body, timeoutMs, signal);
          if (isSessionClosed(a))
            throw new TransportFailure(
              `RouterOS ${method} /rest/${path.split("?")[0]}: HTTP ${a.status} ${detailOf(a.body)} (the router's own request timeout)`,
              true,
            );
        } catch (e) {
          // A copy outlives its request by design: that deadline passing says nothing about health.
          if (slowIsNormal && e instanceof TransportFailure && e.timedOut) return e;
          throw e;
        }
        if (a.status >= 500)
          throw new TransportFailure(`RouterOS ${method} /rest/${path}: HTTP ${a.status} ${detailOf(a.body)}`);
        return a;
      },
      callKind(method, path),
    );
  }

  const detailOf = (b: unknown) => {
    if (b && typeof b === "object") {
      const o = b as { message?: string; detail?: string };
      return [o.message, o.detail].filter(Boolean).join(": ");
    }
    return String(b ?? "");
  };

  function refuse(method: string, path: string, a: Answer): never {
    const detail = detailOf(a.body);
    if (a.status === 401 || a.status === 403) {
      throw unavailable(
        `RouterOS refused the credentials for ${method} /rest/${path} (HTTP ${a.status}); check --routeros-user and the password`,
      );
    }
    throw new RestError(a.status, detail, `RouterOS ${method} /rest/${path.split("?")[0]}: HTTP ${a.status} ${detail}`);
  }

  const wrapBreaker = (e: unknown): never => {
    if (e instanceof TransportFailure) throw unavailable(e.message);
    throw e;
  };

  return {
    address,
    async get<T>(path: string, query?: Record<string, string>, signal?: AbortSignal): Promise<T> {
      const qs = query ? `?${new URLSearchParams(query).toString()}` : "";
      let last: unknown;
      for (let i = 0; i < attempts; i++) {
        try {
          const a = (await guarded("GET", path + qs, undefined, opts.requestTimeoutMs, signal)) as Answer;
          if (a.status >= 400) refuse("GET", path, a);
          return a.body as T;
        } catch (e) {
          // Refusals, an open breaker and cancellation are answers, not glitches: no retry.
          if (!(e instanceof TransportFailure) || signal?.aborted) return wrapBreaker(e);
          last = e;
          if (i + 1 < attempts) await sleep(Math.random() * backoffMs * 2 ** i, signal);
        }
      }
      return wrapBreaker(last);
    },
    async put(path, body, signal, timeoutMs) {
      try {
        const a = await guarded("PUT", path, body, timeoutMs ?? opts.requestTimeoutMs, signal, timeoutMs !== undefined);
        if (a instanceof TransportFailure) throw a;
        if (a.status >= 400) refuse("PUT", path, a);
        return a.body as Row;
      } catch (e) {
        if (e instanceof TransportFailure) throw new OutcomeUnknownError(`RouterOS PUT /rest/${path}`, e.message);
        throw e;
      }
    },
    async patch(path, body, signal) {
      try {
        const a = (await guarded("PATCH", path, body, opts.requestTimeoutMs, signal)) as Answer;
        if (a.status >= 400) refuse("PATCH", path, a);
        return a.body as Row;
      } catch (e) {
        if (e instanceof TransportFailure) throw new OutcomeUnknownError(`RouterOS PATCH /rest/${path}`, e.message);
        throw e;
      }
    },
    async remove(path, signal) {
      try {
        const a = (await guarded("DELETE", path, undefined, opts.requestTimeoutMs, signal)) as Answer;
        if (a.status >= 400) refuse("DELETE", path, a);
      } catch (e) {
        if (e instanceof TransportFailure) throw new OutcomeUnknownError(`RouterOS DELETE /rest/${path}`, e.message);
        throw e;
      }
    },
  };
}

export const isRestError = (e: unknown): e is RestError => e instanceof RestError;
export const isOutcomeUnknown = (e: unknown): e is OutcomeUnknownError => e instanceof OutcomeUnknownError;
