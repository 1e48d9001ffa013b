import * as v from "valibot";
import { FS_TYPES, multiNodeWriteProblem } from "../csi/capabilities.ts";
import { ACCESS_TYPES, CapabilityShape, Message } from "../csi/requests.ts";
import { invalidArgument } from "../runtime/errors.ts";
import type { VolumeParams } from "../backends/backend.ts";

/** Names the CO gives volumes and snapshots: they only feed a hash, but junk is refused at the edge. */
export const NAME_MAX = 128;
const NAME_CHARS = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

export const NameSchema = (field: string) =>
  v.pipe(
    v.string(`${field} must be a string`),
    v.minLength(1, `${field} is required`),
    v.maxLength(NAME_MAX, `${field} must be at most ${NAME_MAX} characters`),
    v.regex(
      NAME_CHARS,
      `${field} may contain only letters, digits, '.', '_', ':' and '-', starting with a letter or digit`,
    ),
  );

export { ACCESS_MODES, FS_TYPES, type AccessMode } from "../csi/capabilities.ts";

/**
 * A capability as the controller reads it: the shared shape (csi/requests.ts) with the oneof named.
 * Which ones this driver serves is unsupportedCapability's answer, reported per RPC.
 */
export const CapabilitySchema = Message({
  ...CapabilityShape.entries,
  access_type: v.picklist(ACCESS_TYPES, "must be mount or block"),
});
export type VolumeCapability = v.InferOutput<typeof CapabilitySchema>;

export const CapabilitiesSchema = v.pipe(
  v.array(CapabilitySchema, "volume_capabilities must be a list"),
  v.minLength(1, "volume_capabilities must not be empty"),
);

/** Why this driver cannot serve a capability, or null. */
export function unsupportedCapability(c: VolumeCapability): string | null {
  const mode = c.access_mode.mode;
  if (c.access_type === "mount") {
    const fs = c.mount?.fs_type ?? "";
    if (fs && !(FS_TYPES as readonly string[]).includes(fs))
      return `fs_type ${JSON.stringify(fs)} is not supported (${FS_TYPES.join(", ")})`;
  }
  return multiNodeWriteProblem(c.access_type, mode);
}

export const isMultiNode = (mode: string) => mode.startsWith("MULTI_NODE_");

/**
 * StorageClass parameters, Go-driver spelling. Keys the CO adds on its own (`csi.storage.k8s.io/pvc/name`
 * and friends with --extra-create-metadata) are accepted and ignored; any other unknown key is refused
 * so a typo does not silently give a default.
 */
const KNOWN_PARAMS = new Set([
  "rdsAddress",
  "nvmeAddress",
  "nvmePort",
  "volumePath",
  "ctrlLossTmo",
  "reconnectDelay",
  "keepAliveTmo",
  "csi.storage.k8s.io/fstype",
]);
const CO_PARAM = /^csi\.storage\.k8s\.io\//;
const HOST = /^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:]+:[0-9a-fA-F:.]*|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/;
const VOLUME_PATH = /^(\/[A-Za-z0-9][A-Za-z0-9._-]*)+$/;

function intParam(params: Record<string, string>, key: string, min: number, max: number, dflt: number): number {
  const raw = params[key];
  if (raw === undefined || raw === "") return dflt;
  if (!/^-?\d+$/.test(raw))
    throw invalidArgument(`parameters.${key}`, `must be a whole number (got ${JSON.stringify(raw.slice(0, 40))})`);
  const n = Number(raw);
  if (n < min || n > max) throw invalidArgument(`parameters.${key}`, `must be between ${min} and ${max} (got ${n})`);
  return n;
}

export function volumePathProblem(p: string): string | null {
  if (!VOLUME_PATH.test(p))
    return "must be an absolute path of plain components (letters, digits, '.', '_', '-'), without '..' or a trailing '/'";
  if (p.split("/").some((c) => c === "." || c === "..")) return "must not contain '.' or '..' components";
  if (p.split("/").length < 3) return "must be a directory inside a storage pool, e.g. /storage-pool/metal-csi";
  return null;
}

export interface ParamContext {
  defaults: VolumeParams;
  /** Hostname of the management address; a StorageClass naming another RDS is refused. */
  managementHost?: string;
}

export function parseParams(params: Record<string, string> | null | undefined, ctx: ParamContext): VolumeParams {
  const p = params ?? {};
  for (const [k, val] of Object.entries(p)) {
    if (!KNOWN_PARAMS.has(k) && !CO_PARAM.test(k))
      throw invalidArgument(`parameters.${k.slice(0, 60)}`, "is not a parameter this driver knows");
    if (typeof val !== "string" || val.length > 1024)
      throw invalidArgument(`parameters.${k}`, "must be a string of at most 1024 characters");
  }
  const volumePath = p.volumePath || ctx.defaults.volumePath;
  const vpProblem = volumePathProblem(volumePath);
  if (vpProblem) throw invalidArgument("parameters.volumePath", vpProblem);
  const nvmeAddress = p.nvmeAddress || ctx.defaults.nvmeAddress;
  if (nvmeAddress !== undefined && !HOST.test(nvmeAddress))
    throw invalidArgument("parameters.nvmeAddress", "must be an IP address or host name");
  if (p.rdsAddress) {
    if (!HOST.test(p.rdsAddress)) throw invalidArgument("parameters.rdsAddress", "must be an IP address or host name");
    if (ctx.managementHost && p.rdsAddress !== ctx.managementHost) {
      throw invalidArgument(
        "parameters.rdsAddress",
        `names ${p.rdsAddress} but this controller manages ${ctx.managementHost}; run one controller per RDS`,
      );
    }
  }
  const fsType = p["csi.storage.k8s.io/fstype"] || ctx.defaults.fsType;
  if (!(FS_TYPES as readonly string[]).includes(fsType))
    throw invalidArgument("parameters.csi.storage.k8s.io/fstype", `must be one of ${FS_TYPES.join(", ")}`);
  return {
    volumePath,
    ...(nvmeAddress ? { nvmeAddress } : {}),
    nvmePort: intParam(p, "nvmePort", 1, 65535, ctx.defaults.nvmePort),
    ctrlLossTmo: intParam(p, "ctrlLossTmo", -1, 86400 * 365, ctx.defaults.ctrlLossTmo),
    reconnectDelay: intParam(p, "reconnectDelay", 1, 3600, ctx.defaults.reconnectDelay),
    keepAliveTmo: intParam(p, "keepAliveTmo", 0, 3600, ctx.defaults.keepAliveTmo),
    fsType,
  };
}
