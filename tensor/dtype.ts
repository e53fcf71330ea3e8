import { DTypeError, show } from "./errors.ts";

/**
 * Storage types. Arithmetic is always float32 (float16 is storage only). `int8` and
 * `float8e4m3` are storage dtypes of quantized data (`la.quantize`): tensors of them can be
 * created, read, moved and disposed, but ops refuse them until `la.dequantize` turns them
 * back into float32.
 */
export type DType = "float32" | "float16" | "int8" | "float8e4m3";

/** The dtypes arithmetic ops accept. */
export type ComputeDType = "float32" | "float16";

/** The storage-only dtypes of quantized data. */
export type QuantDType = "int8" | "float8e4m3";

/** All supported dtypes. */
export const DTYPES: readonly DType[] = ["float32", "float16", "int8", "float8e4m3"];

/** Bytes per element as stored. */
export function bytesPerElement(dtype: DType): number {
  return dtype === "float32" ? 4 : dtype === "float16" ? 2 : 1;
}

/** Whether `dtype` is a storage-only dtype of quantized data. */
export function isQuantDType(dtype: DType): dtype is QuantDType {
  return dtype === "int8" || dtype === "float8e4m3";
}

/** Throws {@link DTypeError} unless `dtype` is a supported dtype. */
export function checkDType(dtype: unknown, what = "dtype"): DType {
  if (!(DTYPES as readonly unknown[]).includes(dtype)) {
    throw new DTypeError(
      `${what}: expected one of ${DTYPES.map((d) => JSON.stringify(d)).join(", ")}, got ${
        typeof dtype === "string" ? JSON.stringify(dtype) : show(dtype)
      }`,
    );
  }
  return dtype as DType;
}

/**
 * Throws {@link DTypeError} when `op` is given a tensor of a storage-only dtype (`int8`,
 * `float8e4m3`): their values mean nothing without the scales `la.quantize` returned.
 */
export function checkComputeDType(op: string, dtype: DType, what = "input"): ComputeDType {
  if (isQuantDType(dtype)) {
    throw new DTypeError(
      `${op}: ${what} is ${dtype}, a storage dtype of quantized data; arithmetic needs ` +
        `float32 or float16: use la.dequantize first`,
    );
  }
  return dtype;
}

/** Rounds every value to the nearest float16 (in place) and returns the array. */
export function roundToF16(values: Float32Array): Float32Array {
  for (let i = 0; i < values.length; i++) values[i] = Math.f16round(values[i]);
  return values;
}

/**
 * Unit roundoff of a dtype (half an ulp at 1). For `float8e4m3` that of its 3-bit
 * mantissa; `int8` has no relative roundoff, so its entry is half a step relative to 127.
 */
export function epsilon(dtype: DType): number {
  switch (dtype) {
    case "float16":
      return 2 ** -11;
    case "float8e4m3":
      return 2 ** -4;
    case "int8":
      return 0.5 / 127;
    default:
      return 2 ** -24;
  }
}
