/**
 * leanattn: a small tensor library for Deno with a CPU and a WebGPU backend whose headline
 * ops compute attention three ways — {@link naiveAttention}, {@link flashAttention}
 * (FlashAttention-2, and FlashDecoding with `numSplits`) and {@link leanAttention}
 * (LeanAttention, arXiv 2405.10480: a stream-K partition of the decode work into equal runs of
 * key tiles, joined by the associative softmax merge) — that agree to within rounding on every
 * backend for every way the reduction is split.
 *
 * Layouts follow PyTorch SDPA: `q: [B, Hq, Sq, D]`, `k, v: [B, Hkv, N, D]` (`Hq % Hkv == 0`),
 * output `[B, Hq, Sq, D]`, `lse: [B, Hq, Sq]` (natural log, float32). Ops are synchronous;
 * only `await t.data()`, `t.toArray()`, `t.toNdarray()` and `t.to(backend)` wait.
 *
 * @example
 * ```ts
 * import * as la from "./mod.ts";
 *
 * const backend = la.cpu(); // or: await la.defaultBackend()
 * const q = la.randn([2, 8, 1, 64], { seed: 1, backend });
 * const k = la.randn([2, 2, 300, 64], { seed: 2, backend });
 * const v = la.randn([2, 2, 300, 64], { seed: 3, backend });
 * const opts = { kvLens: [300, 120] };
 * const lean = await la.leanAttention(q, k, v, { ...opts, tileSize: 32, grid: 7 }).data();
 * const naive = await la.naiveAttention(q, k, v, opts).data();
 * const err = lean.reduce((m, x, i) => Math.max(m, Math.abs(x - naive[i])), 0);
 * console.log(err < 1e-5); // true
 * ```
 *
 * @module
 */

export { Tensor } from "./tensor/tensor.ts";
export type { NestedArray } from "./tensor/tensor.ts";
export { full, ones, randn, tensor, zeros } from "./tensor/creation.ts";
export type { CreationOptions, FlatData, NestedData } from "./tensor/creation.ts";
export { fromNdarray, toNdarray } from "./tensor/ndarray.ts";
export type { NdArray, NdArrayLike } from "./tensor/ndarray.ts";
export type { ComputeDType, DType, QuantDType } from "./tensor/dtype.ts";
export type { Shape } from "./tensor/shape.ts";
export {
  ArgumentError,
  BackendMismatchError,
  BackendUnavailableError,
  DeviceLostError,
  DisposedTensorError,
  DTypeError,
  LeanattnError,
  LimitError,
  ShapeError,
} from "./tensor/errors.ts";

export type {
  AttentionInputs,
  AttentionParams,
  Backend,
  BackendTiming,
  BinaryOp,
  DataId,
  LeanGridProblem,
  MemoryInfo,
  PagedKVInfo,
  ReduceOp,
  StoragePart,
  TensorBackend,
  TensorInfo,
  UnaryOp,
} from "./backends/backend.ts";
export { cpu, cpuThreads, setCpuThreads } from "./backends/cpu/cpu_backend.ts";
export { webgpu, WebGpuBackend } from "./backends/webgpu/webgpu_backend.ts";
export type { PassTiming, WebGpuOptions } from "./backends/webgpu/webgpu_backend.ts";
export type { GpuBinding, GpuContext, GpuFeatures } from "./backends/webgpu/context.ts";
export type { AttentionTuning } from "./backends/webgpu/attention/mod.ts";
export { defaultBackend, fallbackReason, getBackend, setBackend } from "./defaults.ts";

export { add, div, maximum, mul, sub } from "./ops/binary.ts";
export { exp, log, neg, tanh } from "./ops/unary.ts";
export { max, sum } from "./ops/reduce.ts";
export { softmax } from "./ops/softmax.ts";
export { matmul } from "./ops/matmul.ts";
export type { MatmulOptions } from "./ops/matmul.ts";
export { transpose } from "./ops/transpose.ts";
export { rope } from "./ops/rope.ts";
export { dequantize, quantize } from "./ops/quantize.ts";
export type { QuantizedTensor, QuantizeOptions } from "./ops/quantize.ts";
export type { RopeOptions } from "./ops/rope.ts";
export { cast } from "./ops/cast.ts";
export { where } from "./ops/where.ts";

export type { AttentionOptions, AttentionWindow, VariantOptions } from "./attention/_validate.ts";
export {
  windowFromFlashAttention,
  windowFromModelCard,
  windowFromOnnxRuntime,
} from "./attention/window.ts";
export { naiveAttention } from "./attention/naive.ts";
export type { NaiveAttentionOptions } from "./attention/naive.ts";
export { flashAttention, flashAttentionPlan, flashSchedule } from "./attention/flash.ts";
export type { FlashOptions } from "./attention/flash.ts";
export {
  defaultLeanGrid,
  leanAttention,
  leanAttentionPlan,
  leanAttentionSchedule,
} from "./attention/lean.ts";
export type { LeanOptions } from "./attention/lean.ts";
export { calibratedGrid, calibrateGrid } from "./attention/calibrate_grid.ts";
export type { CalibrateOptions, Calibration } from "./attention/calibrate_grid.ts";
// The paged K/V types come from their functions (constructors are internal): types only.
export { kvCache } from "./attention/kv_cache.ts";
export type { AppendOptions, KVCache, KVCacheOptions } from "./attention/kv_cache.ts";
export { pagedKV } from "./attention/paged_kv.ts";
export type { PagedKV, PagedKVOptions } from "./attention/paged_kv.ts";
export { mergeAttentionStates } from "./attention/merge.ts";
export type { AttentionState, MergeOptions } from "./attention/merge.ts";
export { loadAttentionState, saveAttentionState } from "./attention/state_file.ts";
export type { LoadedAttentionState, LoadStateOptions } from "./attention/state_file.ts";
export { invariantSchedule, leanSchedule, splitSchedule } from "./schedule/lean_schedule.ts";
export type { PieceRule } from "./schedule/limits.ts";
export type {
  CorePlan,
  LeanCut,
  LeanPlan,
  LeanSchedule,
  LeanSegment,
  LeanUnit,
} from "./schedule/lean_schedule.ts";
export { numSplitsHeuristic } from "./schedule/split_heuristic.ts";
export type { SplitHeuristicInput } from "./schedule/split_heuristic.ts";
export { renderSchedule } from "./schedule/render_schedule.ts";
export { isPlainVariant, PLAIN_ATTENTION } from "./schedule/attention_plan.ts";
export type {
  AttentionAlgo,
  AttentionPlan,
  AttentionRun,
  AttentionVariant,
  PagedLayout,
} from "./schedule/attention_plan.ts";
export type { RenderOptions } from "./schedule/render_schedule.ts";
export { JUPYTER_DISPLAY, scheduleDisplay } from "./display.ts";
export type { DisplayBundle } from "./display.ts";
