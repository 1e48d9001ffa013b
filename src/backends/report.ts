import type { Backend } from "./backend.ts";
import { describeFeatures, type Presence, type RouterOsFeatures } from "./routeros/features.ts";

/** What the controller's admin socket tells doctor about its backend. */
export interface BackendReport {
  kind: Backend["kind"];
  address: string;
  version?: string;
  fields: { field: string; presence: Presence; effect: string }[];
}

export function backendReport(backend: Backend & { features?(): RouterOsFeatures }): BackendReport {
  const f = backend.features?.();
  return {
    kind: backend.kind,
    address: backend.address,
    ...(f?.version ? { version: f.version } : {}),
    fields: f ? describeFeatures(f) : [],
  };
}
