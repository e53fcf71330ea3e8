/**
 * The backend contract: a short list of primitives over untyped storage. Ops validate their
 * inputs once (see `ops/`) and then call exactly one of these; a backend never re-validates.
 * A new backend implements this interface and nothing above it changes.
 *
 * @module
 */
import type { DType, QuantDType } from "../tensor/dtype.ts";
import type { Shape } from "../tensor/shape.ts";
import type { LeanPlan } from "../schedule/lean_schedule.ts";
import type { PieceRule } from "../schedule/limits.ts";
import type { AttentionPlan, AttentionRun } from "../schedule/attention_plan.ts";
import type { DataId, MemoryInfo, TensorBackend } from "../tensor/storage.ts";
import { ArgumentError } from "../tensor/errors.ts";

export type { AttentionPlan, AttentionRun, DataId, MemoryInfo, TensorBackend };

/** What a kernel needs to know of an input tensor. */
export interface TensorInfo {
  /** The backend storage. */
  readonly id: DataId;
  /** Row-major shape. */
  readonly shape: Shape;
  /** Storage dtype. */
  readonly dtype: DType;
}

/**
 * Elementwise unary ops (`log` is natural; naive attention needs it for the LSE, `tanh` for
 * the soft-cap).
 */
export type UnaryOp = "exp" | "neg" | "log" | "tanh";
/** Elementwise binary ops (broadcasting). */
export type BinaryOp = "add" | "sub" | "mul" | "div" | "max";
/** Reductions along one axis. */
export type ReduceOp = "sum" | "max";

/** One kernel run of an attention plan (see {@link AttentionPlan}). */
export type AttentionParams = AttentionRun;

/**
 * The tensors an attention variant reads besides q, k, v (see `AttentionVariant`): present
 * exactly when the plan's variant says so.
 */
export interface AttentionInputs {
  /** Sink logits, float32 `[Hq]`. */
  readonly sinks?: TensorInfo;
  /** ALiBi slopes, float32 `[Hq]`. */
  readonly alibiSlopes?: TensorInfo;
  /** Additive bias, float32 or float16, of the plan variant's `bias.shape`. */
  readonly bias?: TensorInfo;
  /** Paged K/V: present exactly when the plan is paged (`plan.paged`). */
  readonly pages?: PagedKVInfo;
  /**
   * Quantized K/V (`plan.kvScales` set), whole K/V: float32 scales of K, `[B, Hkv, N]`
   * ("token") or `[B, Hkv]` ("head"). Paged K/V carry theirs in {@link PagedKVInfo}.
   */
  readonly kScale?: TensorInfo;
  /** Scales of V, as `kScale`. */
  readonly vScale?: TensorInfo;
}

/**
 * Paged K/V on a backend (layout: `PagedLayout`): with a paged plan, `attention` reads keys
 * and values through these, and its `k`, `v` arguments are `kPages[0]`, `vPages[0]`.
 */
export interface PagedKVInfo {
  /** K page buffers in page order, each `[Pc, Hkv, pageSize, D]`, all of one dtype. */
  readonly kPages: readonly TensorInfo[];
  /** V page buffers, laid out as `kPages`. */
  readonly vPages: readonly TensorInfo[];
  /** The block table `[B, maxBlocks]` on the device ({@link Backend.createIndexTable}). */
  readonly blockTable: DataId;
  /**
   * Quantized pages (`plan.kvScales` is "token"): per page buffer, the float32 scales of its
   * K rows `[Pc, Hkv, pageSize]` (row r of a page buffer has scale element r).
   */
  readonly kScalePages?: readonly TensorInfo[];
  /** Scales of the V rows, as `kScalePages`. */
  readonly vScalePages?: readonly TensorInfo[];
}

/** One timed pass of submitted work (a backend with the profiling capability). */
export interface BackendTiming {
  /** Milliseconds the pass took on the device. */
  ms: number;
  /** Device timestamp of its start, in ns, where known. */
  startNs?: number;
  /** Device timestamp of its end, in ns, where known. */
  endNs?: number;
}

/**
 * One part of a tensor stored across several buffers (what {@link Backend.storageParts}
 * returns, spelled out there so the public API needs no extra type): the
 * range `[n0, n1)` of its second-to-last axis, itself an ordinary row-major tensor of the
 * same shape with that axis `n1 − n0` long.
 */
export interface StoragePart {
  /** The part's storage. */
  readonly id: DataId;
  /** First index of the second-to-last axis it holds. */
  readonly n0: number;
  /** One past the last index it holds. */
  readonly n1: number;
}

/** What a backend may look at to pick `leanAttention`'s default grid for one call. */
export interface LeanGridProblem {
  /** The lean plan without its grid. */
  plan: Omit<LeanPlan, "grid">;
  /** Query rows per unit (GQA group × rows per query block). */
  unitRows: number;
  /** Head dimension. */
  D: number;
  /** Storage dtype of K and V. */
  kvDtype: DType;
}

/**
 * A compute backend: the storage of {@link TensorBackend} plus the primitives the ops call.
 * Members marked optional are capabilities: callers test for them, never for a backend's
 * name.
 */
export interface Backend extends TensorBackend {
  /** How many independent workers run at once; default lean `grid` and split heuristics. */
  readonly parallelism: number;
  /** Optional: the shape-free default lean `grid` (else `parallelism`). */
  readonly defaultGrid?: number;
  /**
   * Optional: true where `defaultGrid` is a guess that timing should replace
   * (`calibrateGrid`; `defaultBackend()` does it once), e.g. a GPU no table lists.
   */
  readonly gridNeedsCalibration?: boolean;
  /**
   * Optional: the lean `grid` for one problem when the caller gives none. `base` is the
   * shape-free default (`defaultLeanGrid`); a backend with a cost model of its kernels may
   * return another worker count for this shape (the WebGPU backend picks one worker a unit
   * where that saves its second pass). Returns a positive integer.
   */
  leanGrid?(problem: LeanGridProblem, base: number): number;
  /**
   * Optional: how a batch-invariant schedule cuts units of `unitRows` query rows (the
   * shortest piece and the most pieces a unit; default `DEFAULT_PIECE_RULE`: 1024 keys, 16).
   * It may depend on the backend's kernels and the problem's fixed shape, never on the batch.
   */
  invariantPieces?(unitRows: number): PieceRule;
  /**
   * Optional: prepares one run of an attention plan once, at planning time (kernel choice,
   * packed metadata); the result is kept in `run.prepared` and read back by `attention`.
   */
  prepareAttention?(plan: AttentionPlan, run: AttentionRun): unknown;
  /**
   * Optional (paged K/V; present together with `gatherPageRows` and `scatterPageRows`): an
   * int32 table on the device, read by paged attention (a block table). Freed with
   * `release`; counted by `memory()`.
   */
  createIndexTable?(values: Int32Array): DataId;
  /**
   * Optional (paged K/V): a new contiguous tensor `[B, H, n, D]` of the pages' dtype whose
   * row `(b, h, t)` is row `rows[b · n + t]` of `pages` `[P, H, pageSize, D]` (row `r` is
   * `pages[⌊r / pageSize⌋, h, r mod pageSize]`), or zeros where `rows[b · n + t] < 0`.
   */
  gatherPageRows?(pages: TensorInfo, rows: Int32Array, B: number, n: number): DataId;
  /**
   * Optional (paged K/V): writes `src` `[B, H, n, D]` into `pages` in place (no readback):
   * row `(b, h, t)` goes to row `rows[b · n + t]` of `pages` (as in `gatherPageRows`), and
   * nowhere where that is negative. `src` and `pages` have one dtype; rows are distinct.
   */
  scatterPageRows?(pages: TensorInfo, src: TensorInfo, rows: Int32Array): void;
  /**
   * Optional (paged K/V): storage for a tensor of `shape` whose values are not set (a KV
   * cache's pages, written before they are read), without a host array of its size.
   */
  allocUninitialized?(shape: Shape, dtype: DType): DataId;
  /**
   * Optional: the most bytes one tensor is stored in whole (a WebGPU storage binding); a
   * larger tensor is stored in parts ({@link Backend.storageParts}). A KV cache sizes its page
   * buffers to fit. Absent: no limit.
   */
  readonly partBytes?: number;
  /** Optional profiling: whether device timestamps back {@link Backend.readTimings}. */
  readonly timestamps?: boolean;
  /** Optional profiling: time each submitted pass from now on (or stop). */
  setProfiling?(on: boolean): void;
  /** Optional profiling: the timings of the passes submitted since the last read. */
  readTimings?(): Promise<BackendTiming[]>;

  /** Elementwise unary op; output has the input's shape and dtype. */
  unary(op: UnaryOp, x: TensorInfo): DataId;
  /** Elementwise binary op with broadcasting to `outShape`; output dtype `outDType`. */
  binary(op: BinaryOp, a: TensorInfo, b: TensorInfo, outShape: Shape, outDType: DType): DataId;
  /**
   * Elementwise select with broadcasting to `outShape`: `a` where `cond` is nonzero (NaN
   * counts as nonzero), else `b`; output dtype `outDType`. The unchosen operand is never
   * combined with the result, so NaN or ∞ there cannot leak.
   */
  where(
    cond: TensorInfo,
    a: TensorInfo,
    b: TensorInfo,
    outShape: Shape,
    outDType: DType,
  ): DataId;
  /** Reduction along `axis` (output shape: that axis removed). Empty sum = 0, empty max = −∞. */
  reduce(op: ReduceOp, x: TensorInfo, axis: number): DataId;
  /** Softmax along `axis` (numerically stable; a row of all −∞ gives 0s). */
  softmax(x: TensorInfo, axis: number): DataId;
  /**
   * Batched matmul: a `[...batchA, M, K]` (or `[..., K, M]` when `transposeA`), b likewise;
   * leading dims broadcast to `outShape[:-2]`.
   */
  matmul(
    a: TensorInfo,
    b: TensorInfo,
    transposeA: boolean,
    transposeB: boolean,
    outShape: Shape,
    outDType: DType,
  ): DataId;
  /** Permutes axes. */
  transpose(x: TensorInfo, perm: readonly number[]): DataId;
  /**
   * Quantizes x `[B, H, N, D]` (float32 or float16) to `dtype` (formats in VARIANTS.md,
   * "Quantized KV"): data of x's shape and `dtype`, and float32 scales `[B, H, N]` (int8) or
   * `[B, H]` (float8e4m3), scale = max|x| / 127 (or / 448) over its block, data =
   * round(x / scale). A block holding NaN or ±∞ gets scale NaN and data 0; a block of zeros
   * scale 0 and data 0.
   */
  quantize(x: TensorInfo, dtype: QuantDType): { data: DataId; scale: DataId };
  /** float32 `scale · data` of {@link Backend.quantize}'s output, shape `data.shape`. */
  dequantize(data: TensorInfo, scale: TensorInfo): DataId;
  /** Converts storage dtype (values round to float16 when `dtype` is float16). */
  cast(x: TensorInfo, dtype: DType): DataId;
  /**
   * Rotary embedding of x `[B, H, S, D]` (output: x's shape and dtype). Row `(b, s)` reads
   * row `rows[b·S + s]` of the float32 tables `cos`, `sin` `[P, rotaryDim / 2]`; pair k is
   * `(x[2k], x[2k+1])` when `interleaved`, else `(x[k], x[k + rotaryDim/2])`, rotated as
   * `(a·cos − b·sin, a·sin + b·cos)`; features from `rotaryDim` on pass through.
   */
  rope(
    x: TensorInfo,
    cos: TensorInfo,
    sin: TensorInfo,
    rows: TensorInfo,
    rotaryDim: number,
    interleaved: boolean,
  ): DataId;

  /**
   * Attention of q `[B, Hq, Sq, D]` over k, v `[B, Hkv, N, D]` executing `plan` (its runs, in
   * order, merging their states when K/V are stored in parts). Returns out `[B, Hq, Sq, D]`
   * (q's dtype) and lse `[B, Hq, Sq]` (float32, natural log).
   */
  attention(
    q: TensorInfo,
    k: TensorInfo,
    v: TensorInfo,
    plan: AttentionPlan,
    inputs?: AttentionInputs,
  ): {
    out: DataId;
    lse: DataId;
  };
  /**
   * Merges attention states in list order: outs `[..., D]` (same shape each), lses `[...]`
   * float32. Returns the merged normalised out (dtype of the first out) and lse.
   */
  mergeStates(outs: readonly TensorInfo[], lses: readonly TensorInfo[]): {
    out: DataId;
    lse: DataId;
  };
  /**
   * The parts of a tensor the backend stored across several buffers (a WebGPU tensor larger
   * than one storage binding), in axis order; null (or the method absent) when it is stored
   * whole. Only attention accepts such a tensor as k/v: it runs on each part and merges the
   * states. Every other primitive throws `LimitError` when given one.
   */
  storageParts?(
    t: TensorInfo,
  ): readonly { readonly id: DataId; readonly n0: number; readonly n1: number }[] | null;
  /** Frees everything the backend holds (the backend cannot be used afterwards). */
  destroy?(): void;
}

/**
 * The compute backend of a tensor. Every backend the library makes is one; a storage-only
 * {@link TensorBackend} (a user's own, say) holds tensors but cannot run ops.
 */
export function computeBackend(op: string, b: TensorBackend): Backend {
  const c = b as Partial<Backend>;
  if (typeof c.attention !== "function" || typeof c.unary !== "function") {
    throw new ArgumentError(
      `${op}: the tensor's backend ${JSON.stringify(b.name)} stores tensors but runs no ops`,
    );
  }
  return b as Backend;
}
