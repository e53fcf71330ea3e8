/**
 * The backend contract: a short list of primitives over untyped storage. Ops validate their
 * inputs once (see `ops/`) and then call exactly one of these; a backend never re-validates.
 * A new backend implements this interface and nothing above it changes.
 *
 * @module
 */
import type { DType } from "../tensor/dtype.ts";
import type { Shape } from "../tensor/shape.ts";
import type { LeanPlan, LeanSchedule } from "../schedule/lean_schedule.ts";

/** Opaque handle of a backend's storage for one tensor. */
export type DataId = { readonly __dataId: unique symbol } | object;

/** What a kernel needs to know of an input tensor. */
export interface TensorInfo {
  /** The backend storage. */
  readonly id: DataId;
  /** Row-major shape. */
  readonly shape: Shape;
  /** Storage dtype. */
  readonly dtype: DType;
}

/** Elementwise unary ops (`log` is natural; naive attention needs it for the LSE). */
export type UnaryOp = "exp" | "neg" | "log";
/** Elementwise binary ops (broadcasting). */
export type BinaryOp = "add" | "sub" | "mul" | "div" | "max";
/** Reductions along one axis. */
export type ReduceOp = "sum" | "max";

/**
 * Everything an attention kernel needs, already validated and resolved by `attention/`.
 * `schedule` is the work partition: every algorithm (flash, flash-decoding, lean) is one
 * {@link LeanSchedule}; the backend executes it and merges cut units in the listed order.
 */
export interface AttentionParams {
  /** Which algorithm produced the schedule (a backend may pick a kernel by it). */
  readonly algo: "flash" | "flash-decoding" | "lean";
  /** Multiplier of q·k. */
  readonly scale: number;
  /** Bottom-right aligned causal mask. */
  readonly causal: boolean;
  /** Valid keys per batch entry (`0..N`). */
  readonly kvLens: Int32Array;
  /** The partition of the work. */
  readonly schedule: LeanSchedule;
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

/** Memory accounting of a backend, in bytes. */
export interface MemoryInfo {
  /** Bytes held by live tensors. */
  liveBytes: number;
  /** Bytes held in the reuse pool (0 where there is none). */
  pooledBytes: number;
  /** Number of live storage objects. */
  liveCount: number;
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

/** A compute backend. */
export interface Backend {
  /** `"cpu"` or `"webgpu"`. */
  readonly name: string;
  /** What it runs on, e.g. the adapter description. */
  readonly description: string;
  /** How many independent workers run at once; default lean `grid` and split heuristics. */
  readonly parallelism: number;
  /**
   * Optional: the lean `grid` for one problem when the caller gives none. `base` is the
   * shape-free default (`defaultLeanGrid`); a backend with a cost model of its kernels may
   * return another worker count for this shape (the WebGPU backend picks one worker a unit
   * where that saves its second pass). Returns a positive integer.
   */
  leanGrid?(problem: LeanGridProblem, base: number): number;
  /** Whether float16 tensors are stored as halves (else as float32, values rounded). */
  readonly nativeF16: boolean;

  /**
   * Stores values (already rounded to `dtype`). `shape`, when given, lets a backend store a
   * tensor too large for one device buffer binding (see {@link Backend.storageParts}).
   */
  upload(values: Float32Array, dtype: DType, shape?: Shape): DataId;
  /** Reads values back as float32. The only place that waits. */
  read(id: DataId, dtype: DType, size: number): Promise<Float32Array>;
  /** Frees storage. Safe to call once per id. */
  release(id: DataId): void;
  /** Live and pooled bytes. */
  memory(): MemoryInfo;

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
  /** Converts storage dtype (values round to float16 when `dtype` is float16). */
  cast(x: TensorInfo, dtype: DType): DataId;

  /**
   * Attention of q `[B, Hq, Sq, D]` over k, v `[B, Hkv, N, D]` executing `params.schedule`.
   * Returns out `[B, Hq, Sq, D]` (q's dtype) and lse `[B, Hq, Sq]` (float32, natural log).
   */
  attention(q: TensorInfo, k: TensorInfo, v: TensorInfo, params: AttentionParams): {
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
