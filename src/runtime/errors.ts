/**
 * Typed domain errors. Services throw these; the CSI wrapper maps `kind` to a gRPC status in one
 * place (src/csi/status.ts), so nothing below the services knows about gRPC codes.
 */
export type ErrorKind =
  | "invalid-argument"
  | "not-found"
  | "already-exists"
  | "aborted"
  | "unimplemented"
  | "unavailable"
  | "failed-precondition"
  | "out-of-range"
  | "resource-exhausted"
  | "deadline-exceeded"
  | "internal";

export class DomainError extends Error {
  override readonly name = "DomainError";
  constructor(
    readonly kind: ErrorKind,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const isDomainError = (e: unknown): e is DomainError => e instanceof DomainError;

export const invalidArgument = (field: string, message: string) =>
  new DomainError("invalid-argument", `${field}: ${message}`, field);
export const notFound = (message: string) => new DomainError("not-found", message);
export const alreadyExists = (message: string) => new DomainError("already-exists", message);
export const aborted = (message: string) => new DomainError("aborted", message);
export const unimplemented = (message: string) => new DomainError("unimplemented", message);
export const unavailable = (message: string, cause?: unknown) =>
  new DomainError("unavailable", message, undefined, { cause });
export const failedPrecondition = (message: string) => new DomainError("failed-precondition", message);
export const outOfRange = (message: string) => new DomainError("out-of-range", message);
export const resourceExhausted = (message: string) => new DomainError("resource-exhausted", message);
export const internal = (message: string, cause?: unknown) =>
  new DomainError("internal", message, undefined, { cause });

/** Raised when an operation outlives its deadline; carries what was running and for how long. */
export class DeadlineError extends DomainError {
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super("deadline-exceeded", `${what} did not finish within ${timeoutMs} ms`);
  }
}

export const isDeadlineError = (e: unknown): e is DeadlineError => e instanceof DeadlineError;

export const errorMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e));
