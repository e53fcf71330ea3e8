/**
 * Quantized storage of K/V: `quantize` and `dequantize` (formats and math in VARIANTS.md,
 * "Quantized KV"). The attention ops take quantized K/V as they are.
 *
 * @module
 */
import { isQuantDType, type QuantDType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DTypeError,
  ShapeError,
  show,
} from "../tensor/errors.ts";
import { readOptions } from "../tensor/options.ts";
import { scaleShape } from "../tensor/quant_format.ts";
import { fmt } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import { backendOf, live, liveStorage } from "./_util.ts";

/**
 * Quantized data and its scales, as {@link quantize} returns them: `x ≈ scale · data`.
 * `data` has the original shape `[B, H, N, D]` and dtype `dtype`; `scale` is float32
 * `[B, H, N]` (int8: one per token and head) or `[B, H]` (float8e4m3: one per batch entry
 * and head). The caller owns both tensors (dispose them when done).
 */
export interface QuantizedTensor {
  /** The storage dtype of `data`. */
  readonly dtype: QuantDType;
  /** The quantized values, `[B, H, N, D]`. */
  readonly data: Tensor;
  /** float32 scales, `[B, H, N]` (int8) or `[B, H]` (float8e4m3). */
  readonly scale: Tensor;
}

/** Options of {@link quantize}. */
export interface QuantizeOptions {
  /** The quantized format: `"int8"` or `"float8e4m3"` (OCP E4M3FN). */
  dtype: QuantDType;
}

function quantDType(op: string, dtype: unknown, what: string): QuantDType {
  if (typeof dtype !== "string" || !isQuantDType(dtype as QuantDType)) {
    throw new DTypeError(
      `${op}: ${what} must be "int8" or "float8e4m3", got ${
        typeof dtype === "string" ? JSON.stringify(dtype) : show(dtype)
      }`,
    );
  }
  return dtype as QuantDType;
}

/**
 * Quantizes x `[B, H, N, D]` (float32 or float16) symmetrically. int8: per token and head,
 * `scale = max|x| / 127` over the D features and `data = round(x / scale)` (ties to even,
 * in [−127, 127]). float8e4m3: per batch entry and head, `scale = max|x| / 448` over its
 * N·D values and `data` the E4M3 value nearest to `x / scale` (ties to even). So
 * `dequantize` is within `scale / 2` of x per element (int8), or within a relative 2⁻⁴ of
 * it where `|x / scale| ≥ 2⁻⁶` (float8e4m3; below that within `scale · 2⁻¹⁰`).
 *
 * A block of zeros gets scale 0 and data 0. NaN and ±∞ are not errors (finding them would
 * need a readback on a GPU): a block holding any gets scale NaN and data 0, so its whole
 * block dequantizes to NaN. Throws {@link DTypeError} for another `dtype` or a quantized x,
 * {@link ShapeError} unless x has rank 4.
 *
 * @example
 * ```ts
 * import * as la from "../mod.ts";
 * const x = la.tensor([0.5, -1, 0.25, 2], { shape: [1, 1, 2, 2] });
 * const qt = la.quantize(x, { dtype: "int8" });
 * console.log(await qt.scale.toArray()); // [[[0.007874015718698502, 0.015748031437397003]]]
 * console.log(await qt.data.toArray()); // [[[[64, -127], [16, 127]]]]
 * ```
 */
export function quantize(x: Tensor, options: QuantizeOptions): QuantizedTensor {
  const op = "quantize";
  const t = live(op, "x", x);
  const opts = readOptions<QuantizeOptions>(op, options, ["dtype"]);
  const dtype = quantDType(op, opts.dtype, "dtype");
  if (t.rank !== 4) {
    throw new ShapeError(`${op}: x must be [B, H, N, D] (rank 4), got ${fmt(t.shape)}`);
  }
  const r = backendOf(op, t).quantize(t, dtype);
  return {
    dtype,
    data: new Tensor(t.backend, r.data, t.shape, dtype),
    scale: new Tensor(t.backend, r.scale, scaleShape(dtype, t.shape), "float32"),
  };
}

/**
 * float32 `scale · data` of quantized data, shape `[B, H, N, D]` (see {@link quantize}).
 * Throws {@link ArgumentError} unless `qt` is `{ dtype, data, scale }` of tensors,
 * {@link DTypeError} for an unknown `dtype`, `data` of another dtype or scales not float32,
 * {@link ShapeError} for scales of the wrong shape and {@link BackendMismatchError} when
 * data and scale live on different backends.
 *
 * @example
 * ```ts
 * import * as la from "../mod.ts";
 * const x = la.tensor([1, -2, 3, 448], { shape: [1, 1, 2, 2] });
 * const qt = la.quantize(x, { dtype: "float8e4m3" });
 * console.log(await la.dequantize(qt).toArray()); // [[[[1, -2], [3, 448]]]]
 * ```
 */
export function dequantize(qt: QuantizedTensor): Tensor {
  const op = "dequantize";
  const { data, scale } = checkQuantized(op, "qt", qt);
  const b = backendOf(op, data);
  return new Tensor(data.backend, b.dequantize(data, scale), data.shape, "float32");
}

/**
 * `qt` (named `name` in messages) checked as {@link dequantize} documents: its dtype, live
 * data `[B, H, N, D]` of that dtype and float32 scales of the format's shape on one backend.
 */
export function checkQuantized(
  op: string,
  name: string,
  qt: QuantizedTensor,
): { dtype: QuantDType; data: Tensor; scale: Tensor } {
  if (qt === null || typeof qt !== "object") {
    throw new ArgumentError(
      `${op}: expected ${name} = { dtype, data, scale } from quantize, got ${show(qt)}`,
    );
  }
  const dtype = quantDType(op, qt.dtype, `${name}.dtype`);
  const data = liveStorage(op, `${name}.data`, qt.data);
  const scale = live(op, `${name}.scale`, qt.scale);
  if (data.dtype !== dtype) {
    throw new DTypeError(
      `${op}: ${name}.data must be ${dtype} (${name}.dtype), got ${data.dtype}`,
    );
  }
  if (scale.dtype !== "float32") {
    throw new DTypeError(`${op}: ${name}.scale must be float32, got ${scale.dtype}`);
  }
  if (data.rank !== 4) {
    throw new ShapeError(
      `${op}: ${name}.data must be [B, H, N, D] (rank 4), got ${fmt(data.shape)}`,
    );
  }
  const want = scaleShape(dtype, data.shape);
  if (fmt(scale.shape) !== fmt(want)) {
    throw new ShapeError(
      `${op}: ${name}.scale of ${dtype} data ${fmt(data.shape)} must be ${fmt(want)}, got ${
        fmt(scale.shape)
      }`,
    );
  }
  if (data.backend !== scale.backend) {
    throw new BackendMismatchError(
      `${op}: ${name}.data and ${name}.scale must be on one backend, got ${data.backend.name} ` +
        `and ${scale.backend.name}`,
    );
  }
  return { dtype, data, scale };
}
