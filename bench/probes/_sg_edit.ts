// Shared by probes: the subgroup attention kernel's WGSL edited on its way to the pipeline cache
// (ablations, hoisted loads), timing or bit experiments on the library's own kernel.
import type { GpuContext } from "../../backends/webgpu/context.ts";

/** An edit of the kernel's WGSL; `tag` keeps its pipeline apart from the unedited one's. */
export interface KernelEdit {
  tag: string;
  edit: (wgsl: string) => string;
}

/**
 * From now on, every subgroup-kernel pipeline `ctx` is asked for is compiled from
 * `pick()`'s edit of its WGSL (unedited when `pick()` is null), under the key plus
 * `:<tag>`. `seen` gets the key of every attention pipeline asked for.
 */
export function editSubgroupKernels(
  ctx: GpuContext,
  pick: () => KernelEdit | null,
  seen: (key: string) => void = () => {},
): void {
  const orig = ctx.pipeline.bind(ctx);
  ctx.pipeline = (key, wgsl, entryPoint) => {
    if (key.startsWith("attn-")) seen(key);
    const e = key.startsWith("attn-sg") ? pick() : null;
    return e
      ? orig(`${key}:${e.tag}`, () => e.edit(wgsl()), entryPoint)
      : orig(key, wgsl, entryPoint);
  };
}
