/**
 * What a WebGPU kernel file needs from the backend: the device, what it supports, storage
 * lookup, pooled allocation, cached pipelines and command encoding. Kernel files
 * (`attention.ts`, op kernels) are written against this interface only.
 *
 * Ops are synchronous: `dispatch` records into the backend's pending command encoder, which is
 * submitted before any readback (or when it grows); nothing here waits on the GPU.
 *
 * @module
 */
import type { DataId } from "../backend.ts";
import type { DType } from "../../tensor/dtype.ts";

/** Optional features the device was created with. */
export interface GpuFeatures {
  /** `shader-f16` granted: float16 tensors are stored as f16 and WGSL may `enable f16;`. */
  readonly f16: boolean;
  /** `subgroups` granted (without `enable subgroups;` in WGSL — Naga rejects it). */
  readonly subgroups: boolean;
  /** `timestamp-query` granted. */
  readonly timestamps: boolean;
}

/** A binding of one dispatch: a whole buffer or a byte range of it. */
export type GpuBinding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** The backend services kernel code uses. */
export interface GpuContext {
  /** The device. */
  readonly device: GPUDevice;
  /** Granted optional features. */
  readonly features: GpuFeatures;
  /** Granted limits. */
  readonly limits: GPUSupportedLimits;
  /** Adapter description (vendor, device name). */
  readonly description: string;
  /** The GPU buffer holding a tensor's data (f16 as packed halves when `features.f16`). */
  buffer(id: DataId): GPUBuffer;
  /** Byte size of a tensor's data (elements × storage bytes; not the rounded pool size). */
  byteLength(id: DataId): number;
  /**
   * A new pooled tensor storage of `elements` of `dtype`; returns its id. The contents are
   * unspecified (a reused buffer is not zeroed): write every element with GPU commands, not
   * `queue.writeBuffer` (a queue write would overtake the pending encoder's reads of a reused
   * buffer; use `scratchFrom` for uploaded data).
   */
  alloc(elements: number, dtype: DType): DataId;
  /** Frees a tensor storage from {@link GpuContext.alloc} (a failed op frees what it took). */
  release(id: DataId): void;
  /**
   * A pooled scratch buffer (STORAGE | COPY_SRC | COPY_DST) that returns to the pool once the
   * pending commands are submitted. For partial states, schedules, uniforms.
   */
  scratch(bytes: number): GPUBuffer;
  /** Uploads small data (a schedule, parameters) into a scratch buffer. */
  scratchFrom(data: ArrayBufferView): GPUBuffer;
  /** A compute pipeline cached by `key` (the key names exactly what the WGSL depends on). */
  pipeline(key: string, wgsl: () => string, entryPoint?: string): GPUComputePipeline;
  /**
   * Records one compute dispatch into the pending encoder. Bindings go to group 0 in order
   * (binding i = bindings[i]); a uniform buffer, if any, is just one of them.
   */
  dispatch(
    pipeline: GPUComputePipeline,
    bindings: readonly GpuBinding[],
    workgroups: readonly [number, number?, number?],
    label?: string,
  ): void;
  /** Storage element type name of a dtype in WGSL for this device: `"f32"` or `"f16"`. */
  wgslType(dtype: DType): "f32" | "f16";
}
