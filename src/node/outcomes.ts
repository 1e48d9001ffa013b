import type * as v from "valibot";
import { rpc, type Parsed, type RpcContext, type RpcHandler } from "../csi/handler.ts";
import { CommandFailedError } from "../runtime/command-failed.ts";
import { DomainError, type ErrorKind } from "../runtime/errors.ts";
import { ForeignDataError, GrowNeedsCapabilityError, SizeUnknownError } from "../fs/mkfs.ts";
import { MountTableError } from "../mount/mountinfo.ts";
import { DirectoryNotEmptyError } from "../mount/ops.ts";
import { StormRefusedError } from "../mount/storm-guard.ts";

/**
 * The node's one place where what a helper found out becomes a CSI code. Helpers (fs/, mount/)
 * throw what happened; the answer to the CO depends on it:
 * - a storm at the volume's own device or target: RESOURCE_EXHAUSTED (this volume's excess; gc cleans it);
 *   a storm across the whole table: UNAVAILABLE (the node is in trouble, any volume would be refused);
 * - a command that failed or hung, data mkfs would not overwrite, a size that could not be read:
 *   UNAVAILABLE (retry later; the next stage probes the device again before anything is formatted);
 * - a grow that needs a capability the process lacks, a directory to remove that is not empty:
 *   FAILED_PRECONDITION (retrying cannot help; something else put data there);
 * - the mount table: unreadable or cancelled is UNAVAILABLE (never ABORTED: CSI keeps that code for
 *   "another operation on this volume is pending"), past its size bound RESOURCE_EXHAUSTED, a line
 *   the parser does not understand INTERNAL (a bug of ours or a new kernel format, not the request).
 * Anything else is passed on as it is.
 */
export function csiErrorOf(e: unknown): unknown {
  if (e instanceof DomainError) return e;
  const as = (kind: ErrorKind, err: Error) => new DomainError(kind, err.message, undefined, { cause: err });
  if (e instanceof StormRefusedError) return as(e.scope === "table" ? "unavailable" : "resource-exhausted", e);
  if (e instanceof GrowNeedsCapabilityError || e instanceof DirectoryNotEmptyError) return as("failed-precondition", e);
  if (e instanceof MountTableError)
    return as(
      e.reason === "malformed" ? "internal" : e.reason === "too-large" ? "resource-exhausted" : "unavailable",
      e,
    );
  if (e instanceof ForeignDataError || e instanceof CommandFailedError || e instanceof SizeUnknownError)
    return as("unavailable", e);
  return e;
}

/** rpc() for the Node service: whatever a helper throws reaches the CO through csiErrorOf. */
export function nodeRpc<S extends v.GenericSchema, R>(
  schema: S,
  method: (request: Parsed<S>, ctx: RpcContext) => Promise<R>,
): RpcHandler<R> {
  return rpc(schema, (request, ctx) =>
    method(request, ctx).catch((e: unknown) => {
      throw csiErrorOf(e);
    }),
  );
}
