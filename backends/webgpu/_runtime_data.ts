/**
 * What a tensor's id is on the WebGPU backend: one buffer's storage, or storage in parts
 * across buffers (`_parts.ts`).
 *
 * @module
 */
import type { DType } from "../../tensor/dtype.ts";
import type { PartLayout } from "./_parts.ts";

/** GPU storage of one tensor. */
export class GpuData {
  /** Set by `release`. */
  released = false;
  constructor(
    /** The (pooled, possibly larger) buffer. */
    readonly buffer: GPUBuffer,
    /** Storage dtype. */
    readonly dtype: DType,
    /** Element count. */
    readonly elements: number,
    /** Elements × stored bytes per element. */
    readonly byteLength: number,
  ) {}
}

/**
 * GPU storage of one tensor too large for one binding: `parts[c]` holds range `ranges[c]` of
 * the second-to-last axis (see _chunked.ts). Kernels never see it, only its parts.
 */
export class GpuParts {
  /** Set by `release`. */
  released = false;
  constructor(
    /** One ordinary storage per part, in axis order. */
    readonly parts: readonly GpuData[],
    /** How the tensor is cut. */
    readonly layout: PartLayout,
    /** Storage dtype. */
    readonly dtype: DType,
    /** Element count. */
    readonly elements: number,
    /** Elements × stored bytes per element. */
    readonly byteLength: number,
  ) {}
}
