import { AbsolutePath, DurationMs } from "../config/schemas.ts";
import type { ModeContext, OptionSpec } from "../modes/types.ts";
import { resolveAccess } from "./access.ts";
import { createKubeClient, type KubeClient } from "./client.ts";

/** Options every mode that talks to the Kubernetes API shares. */
export const KUBE_OPTIONS: readonly OptionSpec[] = [
  { name: "kubeconfig", type: "string", describe: "kubeconfig for the Kubernetes API (default: the in-cluster service account; none: run without the API)", schema: AbsolutePath },
  { name: "kube-api-timeout", type: "string", describe: "Deadline of one Kubernetes API call", default: "5s", schema: DurationMs },
];

/** The mode's client, or null when there is no API (not in a pod, no --kubeconfig); a bad --kubeconfig throws. */
export async function kubeClientFor(ctx: ModeContext): Promise<KubeClient | null> {
  const access = await resolveAccess(ctx.config.kubeconfig as string | undefined);
  if (!access) {
    ctx.log.info("no Kubernetes API (not in a pod and no --kubeconfig): PV-annotation resets, Events and node checks are off");
    return null;
  }
  ctx.log.info({ server: access.server, source: access.source }, "Kubernetes API");
  return createKubeClient({ access, timeoutMs: ctx.config.kubeApiTimeout as number });
}
