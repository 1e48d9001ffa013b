import type { OptionSpec } from "../config/option-spec.ts";
import { AbsolutePath, DurationMs } from "../config/schemas.ts";
import type { Logger } from "../runtime/log.ts";
import { resolveAccess } from "./access.ts";
import { createKubeClient, type KubeClient } from "./client.ts";

/** Options every mode that talks to the Kubernetes API shares. */
export const KUBE_OPTIONS = [
  {
    name: "kubeconfig",
    type: "string",
    describe: "kubeconfig for the Kubernetes API (default: the in-cluster service account; none: run without the API)",
    schema: AbsolutePath,
  },
  {
    name: "kube-api-timeout",
    type: "string",
    describe: "Deadline of one Kubernetes API call",
    default: "5s",
    schema: DurationMs,
  },
] as const satisfies readonly OptionSpec[];

/** What kubeClientFor reads of a mode's config (ConfigOf KUBE_OPTIONS). */
export interface KubeConfigValues {
  kubeconfig?: string | undefined;
  kubeApiTimeout: number;
}

/** The mode's client, or null when there is no API (not in a pod, no --kubeconfig); a bad --kubeconfig throws. */
export async function kubeClientFor(cfg: KubeConfigValues, log: Logger): Promise<KubeClient | null> {
  const access = await resolveAccess(cfg.kubeconfig);
  if (!access) {
    log.info(
      "no Kubernetes API (not in a pod and no --kubeconfig): PV-annotation resets, Events and node checks are off",
    );
    return null;
  }
  log.info({ server: access.server, source: access.source }, "Kubernetes API");
  return createKubeClient({ access, timeoutMs: cfg.kubeApiTimeout });
}
