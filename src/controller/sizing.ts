import { invalidArgument, outOfRange } from "../runtime/errors.ts";

export const GiB = 2 ** 30;
export const MIN_VOLUME_BYTES = GiB;
export const MAX_VOLUME_BYTES = 16 * 2 ** 40;

export interface CapacityRange {
  required_bytes?: number;
  limit_bytes?: number;
}

const roundUpGiB = (n: number) => Math.ceil(n / GiB) * GiB;

/**
 * The size to provision for a CSI capacity range: GiB granularity, at least 1 GiB, at most 16 TiB,
 * always inside [required, limit]. `floor` raises the result (restore/clone must hold the source).
 * A range no GiB multiple fits is OUT_OF_RANGE, never silently widened.
 */
export function sizeForRange(range: CapacityRange | null | undefined, floor = 0): number {
  const required = range?.required_bytes ?? 0;
  const limit = range?.limit_bytes ?? 0;
  if (required < 0) throw invalidArgument("capacity_range.required_bytes", "must not be negative");
  if (limit < 0) throw invalidArgument("capacity_range.limit_bytes", "must not be negative");
  if (limit && required > limit)
    throw outOfRange(`capacity_range: required_bytes ${required} exceeds limit_bytes ${limit}`);
  const size = Math.max(MIN_VOLUME_BYTES, roundUpGiB(required), roundUpGiB(floor));
  if (size > MAX_VOLUME_BYTES)
    throw outOfRange(`capacity_range: ${size} bytes is above the maximum volume size ${MAX_VOLUME_BYTES} (16 TiB)`);
  if (limit && size > limit) {
    throw outOfRange(
      `capacity_range: no size in whole GiB (minimum 1 GiB${floor ? `, at least the source's ${floor} bytes` : ""}) fits between required_bytes ${required} and limit_bytes ${limit}`,
    );
  }
  return size;
}

/** Does an existing volume of `size` satisfy the range (idempotent repeat of CreateVolume)? */
export function sizeFits(size: number, range: CapacityRange | null | undefined): boolean {
  const required = range?.required_bytes ?? 0;
  const limit = range?.limit_bytes ?? 0;
  return size >= required && (!limit || size <= limit);
}
