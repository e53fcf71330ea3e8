/**
 * WebGPU attention: executes any {@link LeanSchedule} (FlashAttention-2, FlashDecoding,
 * LeanAttention) with one main dispatch — one workgroup per worker, walking its segments —
 * planned once (`plan.ts`) and run (`run.ts`). The schedule is uploaded as one u32 array
 * (`meta.ts`) so the GPU runs exactly the partition `attention/` computed. Kernels, one a
 * file: a subgroup kernel (D a multiple of 32, with `subgroups`), a workgroup-memory kernel
 * for devices without subgroups, and a generic kernel for everything else; the first that
 * applies runs. Cut units are merged in the subgroup kernel or by the reduce kernel. The WGSL
 * is generated from a small configuration, so every pipeline is specialised (head dim, rows,
 * storage types, unroll) and its cache key says exactly what the text depends on.
 * Arithmetic and partial states are f32; results are deterministic (fixed merge orders
 * whoever merges, no float atomics, no workgroup waits on another).
 *
 * Loops over the head dim are unrolled when the WGSL is generated: besides being faster, this
 * keeps every loop's trip count small, and lavapipe (llvmpipe's gallivm, the CI adapter) stops
 * a loop after 65,535 iterations counted over the whole invocation — a per-key loop over D
 * silently truncated long sequences there.
 *
 * Measured on an H200 (f16 K/V, D = 128, decode; bench/NOTES.md, 2026-11-26 06:18 UTC), as % of
 * a streaming read of the same bytes: MHA 93–98 % at ≥ 268 MB, GQA (4 rows a unit) 89–92 % at
 * ≥ 1 GB but 83–87 % at 268 MB. A call with an in-kernel merge costs ≈ 11–12 µs
 * however little it reads (a dependent dispatch ≈ 2 µs of it), so calls under ≈ 100 MB are far
 * from the streaming limit (17 MB: 12–18 µs).
 *
 * Paged K/V (`plan.paged`): the same kernels, configured as for contiguous K/V of the plan's
 * shape, read each key's row through the block table (`_wgsl_paged.ts`), so a paged call gives
 * the contiguous call's bits; page buffers beyond the first bind after the variant inputs.
 *
 * A visible NaN or +∞ score makes its row NaN (out and lse), as in the float64 reference:
 * kernels track it with a bit test per score (compilers may assume no NaN, and WGSL `max`
 * may drop one) and carry it in partial states as l = NaN.
 *
 * @module
 */
export { type AttentionTuning, checkTuning, invariantPieceFor } from "./tuning.ts";
export { computeUnits, defaultGrid, leanGridFor } from "./cost_model.ts";
export {
  type MainKernel,
  type PlannedDispatch,
  planWebgpuAttention,
  type WebGpuAttentionLaunch,
} from "./plan.ts";
export { runWebgpuAttention, webgpuAttention } from "./run.ts";
export { webgpuMergeStates } from "./merge_states.ts";
