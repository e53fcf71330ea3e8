/**
 * `mergeAttentionStates` on the GPU: the dispatches of the merge-states kernel
 * (`merge_states_kernel.ts`) over a list of states.
 *
 * @module
 */
import type { DataId, TensorInfo } from "../../backend.ts";
import type { GpuBinding, GpuContext } from "../context.ts";
import { LimitError } from "../../../tensor/errors.ts";
import { NEG_INF_BITS, probShift } from "./_wgsl_meta.ts";
import { grid2d } from "./_launch_limits.ts";
import { MERGE_WG, type MergeConfig, mergeKey, mergeWgsl } from "./merge_states_kernel.ts";

/** One dispatch of a merge: states `[i, i + take)`, after an accumulator or not. */
interface MergeStep {
  readonly i: number;
  readonly take: number;
  readonly hasAcc: boolean;
  readonly final: boolean;
}

/**
 * The dispatches merging `n` states within `maxSB` storage buffers per stage: as many states
 * each as fit (2 buffers a state, besides the meta, the accumulator in and out or the result). WebGPU
 * guarantees 8, enough for a two-state merge in one dispatch.
 */
function mergeSteps(n: number, maxSB: number): MergeStep[] {
  const steps: MergeStep[] = [];
  for (let i = 0;;) {
    const hasAcc = i > 0;
    const left = n - i;
    const capFinal = Math.floor((maxSB - 1 - (hasAcc ? 1 : 0) - 2) / 2);
    const final = left <= capFinal;
    const cap = final ? left : Math.floor((maxSB - 1 - (hasAcc ? 1 : 0) - 1) / 2);
    if (cap < 1 && !final) {
      throw new LimitError(
        `mergeAttentionStates: needs at least 5 storage buffers per stage, device allows ${maxSB}`,
      );
    }
    const take = Math.min(cap, left);
    steps.push({ i, take, hasAcc, final });
    if (final) return steps;
    i += take;
  }
}

/**
 * Merges attention states in list order on the GPU: as many states per dispatch as the
 * storage-binding limit allows, carrying an f32 `(m, l, o)` accumulator between dispatches
 * only where one dispatch cannot take them all (a two-state merge never needs it). Every
 * limit is checked before anything is allocated; a failure frees what was taken.
 */
export function webgpuMergeStates(
  ctx: GpuContext,
  outs: readonly TensorInfo[],
  lses: readonly TensorInfo[],
): { out: DataId; lse: DataId } {
  const rows = lses[0].shape.reduce((a, b) => a * b, 1);
  const D = outs[0].shape[outs[0].shape.length - 1];
  const outT = ctx.wgslType(outs[0].dtype);
  const maxBind = ctx.limits.maxStorageBufferBindingSize;
  const bind = (what: string, bytes: number) => {
    if (bytes > maxBind) {
      throw new LimitError(
        `mergeAttentionStates: ${what} needs a ${bytes}-byte binding, the device allows at ` +
          `most ${maxBind} (maxStorageBufferBindingSize)`,
      );
    }
  };
  bind("the merged output", rows * D * (outT === "f16" ? 2 : 4));
  bind("the merged lse", rows * 4);
  // D = 0 still merges the lse: one thread a row.
  const n = rows * Math.max(D, 1);
  const [nx, ny] = rows === 0 ? [0, 0] : grid2d(ctx, Math.ceil(n / MERGE_WG));
  const steps = rows === 0
    ? []
    : mergeSteps(outs.length, ctx.limits.maxStorageBuffersPerShaderStage);
  const accBytes = rows * (D + 2) * 4;
  if (steps.length > 1) {
    bind(`the accumulator of a ${outs.length}-state merge (over several dispatches)`, accBytes);
  }
  const pipes = steps.map(({ i, take, hasAcc, final }) => {
    const ins = outs.slice(i, i + take).map((t) => ctx.wgslType(t.dtype));
    const cfg: MergeConfig = { ins, hasAcc, final, out: outT };
    return ctx.pipeline(mergeKey(cfg), () => mergeWgsl(cfg), "main");
  });
  const out = ctx.alloc(rows * D, outs[0].dtype);
  let lse: DataId | null = null;
  try {
    lse = ctx.alloc(rows, "float32");
    if (rows === 0) return { out, lse };
    const shift = probShift(outs.length);
    const meta = ctx.scratchFrom(new Uint32Array([rows, D, nx, NEG_INF_BITS, shift]));
    let acc: GPUBuffer | null = null;
    steps.forEach(({ i, take, final }, s) => {
      const bindings: GpuBinding[] = [meta];
      if (acc) bindings.push(acc);
      for (let j = i; j < i + take; j++) {
        bindings.push(ctx.buffer(outs[j].id), ctx.buffer(lses[j].id));
      }
      let next: GPUBuffer | null = null;
      if (final) bindings.push(ctx.buffer(out), ctx.buffer(lse!));
      else bindings.push(next = ctx.scratch(accBytes));
      ctx.dispatch(pipes[s], bindings, [nx, ny]);
      acc = next;
    });
    return { out, lse };
  } catch (e) {
    ctx.release(out);
    if (lse !== null) ctx.release(lse);
    throw e;
  }
}
