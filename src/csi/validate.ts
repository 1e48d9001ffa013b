import * as v from "valibot";
import { invalidArgument } from "../runtime/errors.ts";

/** Validate a decoded request; the first issue becomes INVALID_ARGUMENT naming the field path. */
export function parseRequest<S extends v.GenericSchema>(schema: S, req: unknown): v.InferOutput<S> {
  const r = v.safeParse(schema, req);
  if (r.success) return r.output;
  const issue = r.issues[0]!;
  const field = issue.path?.map((p) => String(p.key)).join(".") || "request";
  throw invalidArgument(field, issue.message);
}
