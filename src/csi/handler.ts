import type * as v from "valibot";
import type { Logger } from "../runtime/log.ts";
import { parseRequest } from "./validate.ts";

/** What an RPC takes from the call beside its request. */
export interface RpcContext {
  log: Logger;
  method: string;
  /** Aborted when the client cancels the call. */
  signal: AbortSignal;
}

/** A request after its schema: the only form a service method ever sees. */
export type Parsed<S extends v.GenericSchema> = v.InferOutput<S>;

/**
 * What the server calls. Requests arrive as decoded protobuf objects of no static type; a handler
 * made by `rpc` parses its request once, at the top, before anything else runs.
 */
export type RpcHandler<R = unknown> = (request: unknown, ctx: RpcContext) => Promise<R>;
export type Handlers = Record<string, RpcHandler>;

/**
 * One handler idiom for every CSI service: a schema and a method of the parsed request. A bad
 * request is INVALID_ARGUMENT naming the field (csi/validate.ts) and the method never runs.
 */
export function rpc<S extends v.GenericSchema, R>(
  schema: S,
  method: (request: Parsed<S>, ctx: RpcContext) => Promise<R>,
): RpcHandler<R> {
  return (request, ctx) => {
    // Parsed synchronously, but a refusal is a rejected promise like any other failure of the RPC.
    let parsed: Parsed<S>;
    try {
      parsed = parseRequest(schema, request);
    } catch (e) {
      return Promise.reject(e);
    }
    return method(parsed, ctx);
  };
}
