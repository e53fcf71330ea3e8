/**
 * What a tensor needs of the backend that holds it: storage in, storage out. The compute
 * primitives (`Backend` in backends/backend.ts) extend this, so tensor/ — the lowest layer —
 * imports nothing above it; ops get the compute backend of a tensor through
 * `computeBackend` (backends/backend.ts).
 *
 * @module
 */
import type { DType } from "./dtype.ts";
import type { Shape } from "./shape.ts";

/** Opaque handle of a backend's storage for one tensor. */
export type DataId = { readonly __dataId: unique symbol } | object;

/** Memory accounting of a backend, in bytes. */
export interface MemoryInfo {
  /** Bytes held by live tensors. */
  liveBytes: number;
  /** Bytes held in the reuse pool (0 where there is none). */
  pooledBytes: number;
  /** Number of live storage objects. */
  liveCount: number;
}

/** The storage side of a backend: what `Tensor` and the creation functions call. */
export interface TensorBackend {
  /** `"cpu"` or `"webgpu"`. */
  readonly name: string;
  /** What it runs on, e.g. the adapter description. */
  readonly description: string;
  /** Whether float16 tensors are stored as halves (else as float32, values rounded). */
  readonly nativeF16: boolean;
  /**
   * Stores values (already rounded to `dtype`). `shape`, when given, lets a backend store a
   * tensor too large for one device buffer binding in parts.
   */
  upload(values: Float32Array, dtype: DType, shape?: Shape): DataId;
  /** Reads values back as float32. The only place that waits. */
  read(id: DataId, dtype: DType, size: number): Promise<Float32Array>;
  /** Frees storage. Safe to call once per id. */
  release(id: DataId): void;
  /** Live and pooled bytes. */
  memory(): MemoryInfo;
}
