import { describeFailure, type ExecResult } from "./exec.ts";

/**
 * A command that ran and did not succeed (or was killed at its deadline), with its result. Not a
 * CSI code: what it means for the request (the node is sick, the request was wrong) is decided by
 * the service that asked, which has the result to look at.
 */
export class CommandFailedError extends Error {
  override readonly name: string = "CommandFailedError";
  constructor(
    readonly result: ExecResult,
    what: string,
    message = `${what} failed: ${describeFailure(result)}`,
  ) {
    super(message);
  }
}
