/**
 * `mergeAttentionStates` on the GPU: the dispatches of the merge-states kernel
 * (`merge_states_kernel.ts`) over a list of states.
 *
 * @module
 */
import type { DataId, TensorInfo } from "../../backend.ts";
import type { GpuBinding, GpuContext } from "../context.ts";
import { LimitError } from "../../../tensor/errors.ts";
import { NEG_INF_BITS } from "./_wgsl_meta.ts";
import { checkBinding, grid2d } from "./_launch_limits.ts";
import { MERGE_WG, type MergeConfig, mergeKey, mergeWgsl } from "./merge_states_kernel.ts";

/**
 * Merges attention states in list order on the GPU: as many states per dispatch as the
 * storage-binding limit allows, carrying an f32 `(m, l, o)` accumulator between dispatches.
 */
export function webgpuMergeStates(
  ctx: GpuContext,
  outs: readonly TensorInfo[],
  lses: readonly TensorInfo[],
): { out: DataId; lse: DataId } {
  const rows = lses[0].shape.reduce((a, b) => a * b, 1);
  const D = outs[0].shape[outs[0].shape.length - 1];
  const out = ctx.alloc(rows * D, outs[0].dtype);
  const lse = ctx.alloc(rows, "float32");
  if (rows === 0) return { out, lse };
  // D = 0 still merges the lse: one thread a row.
  const n = rows * Math.max(D, 1);
  const [nx, ny] = grid2d(ctx, Math.ceil(n / MERGE_WG));
  const meta = ctx.scratchFrom(new Uint32Array([rows, D, nx, NEG_INF_BITS]));
  const maxSB = ctx.limits.maxStorageBuffersPerShaderStage;
  const accBytes = rows * (D + 2) * 4;
  checkBinding(ctx, "the merge accumulator", accBytes);
  let acc: GPUBuffer | null = null;
  let i = 0;
  const outT = ctx.wgslType(outs[0].dtype);
  while (true) {
    const hasAcc = acc !== null;
    const left = outs.length - i;
    const capFinal = Math.floor((maxSB - 1 - (hasAcc ? 1 : 0) - 2) / 2);
    const final = left <= capFinal;
    const cap = final ? left : Math.floor((maxSB - 1 - (hasAcc ? 1 : 0) - 1) / 2);
    if (cap < 1 && !final) {
      throw new LimitError(
        `webgpu mergeStates: needs at least 5 storage buffers per stage, device allows ${maxSB}`,
      );
    }
    const take = Math.min(cap, left);
    const ins = outs.slice(i, i + take).map((t) => ctx.wgslType(t.dtype));
    const cfg: MergeConfig = { ins, hasAcc, final, out: outT };
    const bindings: GpuBinding[] = [meta];
    if (acc) bindings.push(acc);
    for (let j = i; j < i + take; j++) {
      bindings.push(ctx.buffer(outs[j].id), ctx.buffer(lses[j].id));
    }
    let next: GPUBuffer | null = null;
    if (final) bindings.push(ctx.buffer(out), ctx.buffer(lse));
    else bindings.push(next = ctx.scratch(accBytes));
    ctx.dispatch(ctx.pipeline(mergeKey(cfg), () => mergeWgsl(cfg), "main"), bindings, [nx, ny]);
    i += take;
    if (final) break;
    acc = next;
  }
  return { out, lse };
}
