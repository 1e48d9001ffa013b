import * as v from "valibot";
import { IdSchema, Message, NodeCapabilitySchema, RequiredString, StringMap } from "../csi/requests.ts";
import type { Parsed } from "../csi/handler.ts";
import type { KubeletPaths } from "./kubelet-paths.ts";
import { parseVolumeContext } from "./volume-context.ts";

export type { Capability } from "../csi/requests.ts";

/**
 * The Node RPCs' requests as decoded by src/csi/proto.ts (snake_case, enums as names, `access_type`
 * naming the oneof). Each is parsed once at the top of its RPC; every refusal names the field and
 * comes before anything is touched. Paths are checked against the kubelet dir here (lexically; the
 * symlink check needs a child and runs inside the RPC), volume_context becomes the volume's target.
 */
export function nodeRequestSchemas(opts: { paths: KubeletPaths; fileDir: string }) {
  const kubeletPath = (field: string) =>
    v.pipe(
      RequiredString,
      v.transform((raw) => opts.paths.lexical(field, raw)),
    );
  return {
    NodeStageVolume: v.pipe(
      Message({
        volume_id: IdSchema,
        staging_target_path: kubeletPath("staging_target_path"),
        volume_capability: NodeCapabilitySchema,
        volume_context: StringMap,
      }),
      v.transform((r) => ({
        volumeId: r.volume_id,
        stagingPath: r.staging_target_path,
        cap: r.volume_capability,
        target: parseVolumeContext(r.volume_id, r.volume_context, { fileDir: opts.fileDir }),
        volumeContext: r.volume_context,
      })),
    ),
    NodeUnstageVolume: v.pipe(
      Message({ volume_id: IdSchema, staging_target_path: kubeletPath("staging_target_path") }),
      v.transform((r) => ({ volumeId: r.volume_id, stagingPath: r.staging_target_path })),
    ),
    NodePublishVolume: v.pipe(
      Message({
        volume_id: IdSchema,
        staging_target_path: kubeletPath("staging_target_path"),
        target_path: kubeletPath("target_path"),
        volume_capability: NodeCapabilitySchema,
        readonly: v.optional(v.boolean("must be true or false"), false),
      }),
      v.forward(
        v.check((r) => r.target_path !== r.staging_target_path, "must differ from staging_target_path"),
        ["target_path"],
      ),
      v.transform((r) => ({
        volumeId: r.volume_id,
        stagingPath: r.staging_target_path,
        targetPath: r.target_path,
        cap: r.volume_capability,
        readonly: r.readonly,
      })),
    ),
    NodeUnpublishVolume: v.pipe(
      Message({ volume_id: IdSchema, target_path: kubeletPath("target_path") }),
      v.transform((r) => ({ volumeId: r.volume_id, targetPath: r.target_path })),
    ),
    // volume_path is only required here: its form is checked after the volume is known (see expand-stats.ts).
    NodeExpandVolume: v.pipe(
      Message({
        volume_id: IdSchema,
        capacity_range: v.nullish(
          Message({
            required_bytes: v.optional(
              v.pipe(v.number("must be a non-negative number"), v.minValue(0, "must be a non-negative number")),
              0,
            ),
            limit_bytes: v.optional(v.number("must be a number"), 0),
          }),
        ),
        volume_path: RequiredString,
      }),
      v.transform((r) => ({
        volumeId: r.volume_id,
        requiredBytes: r.capacity_range?.required_bytes ?? 0,
        limitBytes: r.capacity_range?.limit_bytes ?? 0,
        volumePath: r.volume_path,
      })),
    ),
    NodeGetVolumeStats: v.pipe(
      Message({ volume_id: IdSchema, volume_path: RequiredString }),
      v.transform((r) => ({ volumeId: r.volume_id, volumePath: r.volume_path })),
    ),
    NodeGetCapabilities: v.unknown(),
    NodeGetInfo: v.unknown(),
  };
}

export type NodeRequestSchemas = ReturnType<typeof nodeRequestSchemas>;
export type NodeRequest<K extends keyof NodeRequestSchemas> = Parsed<NodeRequestSchemas[K]>;
