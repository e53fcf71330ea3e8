/**
 * The layout of quantized data (VARIANTS.md, "Quantized KV"), shared by `la.quantize`'s
 * checks and both backends' kernels: which elements share one float32 scale, and the shape
 * of the scales.
 *
 * @module
 */
import type { QuantDType } from "./dtype.ts";
import { E4M3_MAX } from "./float8.ts";

/** The quantized magnitude the largest |x| of a block maps to: 127 (int8) or 448 (E4M3). */
export function quantTop(dtype: QuantDType): number {
  return dtype === "int8" ? 127 : E4M3_MAX;
}

/**
 * Shape of the scales of data `[B, H, N, D]`: `[B, H, N]` for int8 (one per token and
 * head), `[B, H]` for float8e4m3 (one per batch entry and head).
 */
export function scaleShape(dtype: QuantDType, shape: readonly number[]): number[] {
  return dtype === "int8" ? shape.slice(0, 3) : shape.slice(0, 2);
}

/** Elements sharing one scale, consecutive in row-major order: D (int8) or N·D (E4M3). */
export function quantBlock(dtype: QuantDType, shape: readonly number[]): number {
  const [, , N, D] = shape;
  return dtype === "int8" ? D : N * D;
}
