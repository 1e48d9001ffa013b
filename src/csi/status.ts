import { Status as status } from "./grpc-server.ts";
import type { ErrorKind } from "../runtime/errors.ts";

/** The one place where domain error kinds become gRPC status codes. */
export const STATUS_OF_KIND: Record<ErrorKind, status> = {
  "invalid-argument": status.INVALID_ARGUMENT,
  "not-found": status.NOT_FOUND,
  "already-exists": status.ALREADY_EXISTS,
  aborted: status.ABORTED,
  unimplemented: status.UNIMPLEMENTED,
  unavailable: status.UNAVAILABLE,
  "failed-precondition": status.FAILED_PRECONDITION,
  "out-of-range": status.OUT_OF_RANGE,
  "resource-exhausted": status.RESOURCE_EXHAUSTED,
  "deadline-exceeded": status.DEADLINE_EXCEEDED,
  internal: status.INTERNAL,
};

export const statusName = (code: number) => status[code] ?? String(code);
