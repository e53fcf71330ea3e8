/**
 * The device limits an attention launch must respect, checked while planning so a refused
 * call allocates nothing: workgroups per dispatch dimension and storage binding sizes.
 *
 * @module
 */
import type { GpuContext } from "../context.ts";
import { LimitError } from "../../../tensor/errors.ts";

/** 2-D dispatch of `n` workgroups within the per-dimension limit. */
export function grid2d(ctx: GpuContext, n: number): [number, number] {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  const nx = Math.max(1, Math.min(n, max));
  const ny = Math.ceil(n / nx);
  if (ny > max) {
    throw new LimitError(
      `webgpu attention: ${n} workgroups exceed ${max}² (maxComputeWorkgroupsPerDimension)`,
    );
  }
  return [nx, Math.max(1, ny)];
}

/** Throws {@link LimitError} when a binding of `bytes` exceeds the device's limit. */
export function checkBinding(ctx: GpuContext, what: string, bytes: number): void {
  const max = ctx.limits.maxStorageBufferBindingSize;
  if (bytes > max) {
    throw new LimitError(
      `webgpu attention: ${what} needs a ${bytes}-byte binding, device allows at most ${max} (maxStorageBufferBindingSize)`,
    );
  }
}
