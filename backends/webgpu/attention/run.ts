/**
 * Running a planned attention launch (`plan.ts`): allocates the output, the lse and the
 * scratch, binds the tensors and records one main dispatch — one workgroup per worker,
 * walking its segments — and, where the plan has one, the reduce dispatch. A unit cut into
 * pieces (a (batch, kv-head) whose keys several workers share) is merged in the listed order:
 * in the subgroup kernel by the workgroup that finishes its last piece (an integer counter a
 * cut unit says which; `storageBarrier` is a device-scope fence in wgpu), else by the reduce
 * dispatch, which also writes units without keys.
 *
 * @module
 */
import type { AttentionInputs, AttentionParams, DataId, TensorInfo } from "../../backend.ts";
import { ArgumentError } from "../../../tensor/errors.ts";
import type { GpuContext } from "../context.ts";
import { checkBinding } from "./_launch_limits.ts";
import { type MainKernel, planWebgpuAttention, type WebGpuAttentionLaunch } from "./plan.ts";
import type { AttentionTuning } from "./tuning.ts";
import { sgWgsl } from "./subgroup_kernel.ts";
import { wgmWgsl } from "./workgroup_memory_kernel.ts";
import { genericWgsl } from "./generic_kernel.ts";
import { reduceWgsl } from "./reduce_kernel.ts";
import { pagedInputs } from "./_paged_inputs.ts";
import { quantInputs } from "./_quant_inputs.ts";
import { META } from "./_wgsl_meta.ts";

/** WGSL of a launch's main kernel. */
function mainWgsl(k: MainKernel): string {
  if (k.kind === "sg") return sgWgsl(k.config);
  if (k.kind === "wgm") return wgmWgsl(k.config);
  return genericWgsl(k.config);
}

/**
 * Runs a planned launch on these tensors (of the shapes and dtypes it was planned for).
 * Throws {@link LimitError}, before allocating, where a tensor exceeds a binding.
 */
export function runWebgpuAttention(
  ctx: GpuContext,
  launch: WebGpuAttentionLaunch,
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  inputs: AttentionInputs = {},
): { out: DataId; lse: DataId } {
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    checkBinding(ctx, name, ctx.byteLength(t.id));
  }
  // The variant's tensors, in the order the kernel binds them (`AttentionVariant` says which).
  const extra = launch.inputs.map((name) => {
    const t = inputs[name];
    if (!t) {
      throw new ArgumentError(`attention: the plan's variant reads ${name}, which was not given`);
    }
    checkBinding(ctx, name, ctx.byteLength(t.id));
    return ctx.buffer(t.id);
  });
  const m = launch.meta;
  const kvShape = [m[META.B], m[META.Hkv], m[META.N], m[META.D]];
  extra.push(...pagedInputs(ctx, launch.paged, kvShape, k, v, inputs));
  extra.push(...quantInputs(ctx, launch.kvScales, launch.paged, kvShape, inputs));
  const { main, reduce } = launch;
  // Pipelines first: a kernel that fails to build throws here, before anything is allocated.
  const mainPipe = main && ctx.pipeline(main.key, () => mainWgsl(main.kernel), "main");
  const reducePipe = reduce &&
    ctx.pipeline(reduce.key, () => reduceWgsl(reduce.D, reduce.q, reduce.sinks), "main");
  const out = ctx.alloc(launch.outElements, launch.outDtype);
  let lse: DataId | null = null;
  try {
    lse = ctx.alloc(launch.rows, "float32");
    const metaBuf = ctx.scratchFrom(launch.meta);
    const part = ctx.scratch(launch.partBytes);
    const outBuf = ctx.buffer(out);
    const lseBuf = ctx.buffer(lse);
    if (main && mainPipe) {
      const bindings = [
        metaBuf,
        ctx.buffer(q.id),
        ctx.buffer(k.id),
        ctx.buffer(v.id),
        outBuf,
        lseBuf,
        part,
      ];
      if (launch.counters > 0) bindings.push(ctx.scratchFrom(new Uint32Array(launch.counters)));
      bindings.push(...extra);
      ctx.dispatch(mainPipe, bindings, main.workgroups, launch.label);
    }
    if (reduce && reducePipe) {
      const bindings = [metaBuf, outBuf, lseBuf, part];
      if (reduce.sinks) bindings.push(ctx.buffer(inputs.sinks!.id));
      ctx.dispatch(reducePipe, bindings, reduce.workgroups, "attention-reduce");
    }
  } catch (e) {
    // A failed call leaves nothing behind (its scratch returns to the pool at the next flush).
    ctx.release(out);
    if (lse !== null) ctx.release(lse);
    throw e;
  }
  return { out, lse };
}

/**
 * Executes an attention schedule on the GPU, with explicit kernel knobs where given
 * (benchmarks compare variants; the backend passes `WebGpuBackend.attentionTuning`): plans,
 * then runs.
 */
export function webgpuAttention(
  ctx: GpuContext,
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  params: AttentionParams,
  tuning: AttentionTuning = {},
  inputs: AttentionInputs = {},
): { out: DataId; lse: DataId } {
  const launch = planWebgpuAttention(ctx, q, k, params, tuning);
  return runWebgpuAttention(ctx, launch, q, k, v, inputs);
}
