import * as v from "valibot";
import { invalidArgument } from "../runtime/errors.ts";

/**
 * Validate a decoded request; the first issue becomes INVALID_ARGUMENT naming the field path.
 * Fields are checked in the schema's order and parsing stops at the first problem, so a transform
 * (a path check that throws its own INVALID_ARGUMENT) never runs ahead of an earlier field's refusal.
 */
export function parseRequest<S extends v.GenericSchema>(schema: S, req: unknown): v.InferOutput<S> {
  const r = v.safeParse(schema, req, { abortEarly: true });
  if (r.success) return r.output;
  const issue = r.issues[0];
  const field = issue.path?.map((p) => String(p.key)).join(".") || "request";
  throw invalidArgument(field, issue.message);
}
