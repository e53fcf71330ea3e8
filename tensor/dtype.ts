import { DTypeError, show } from "./errors.ts";

/** Storage types. Arithmetic is always float32 (float16 is storage only). */
export type DType = "float32" | "float16";

/** All supported dtypes. */
export const DTYPES: readonly DType[] = ["float32", "float16"];

/** Bytes per element as stored. */
export function bytesPerElement(dtype: DType): number {
  return dtype === "float16" ? 2 : 4;
}

/** Throws {@link DTypeError} unless `dtype` is a supported dtype. */
export function checkDType(dtype: unknown, what = "dtype"): DType {
  if (dtype !== "float32" && dtype !== "float16") {
    throw new DTypeError(
      `${what}: expected "float32" or "float16", got ${
        typeof dtype === "string" ? JSON.stringify(dtype) : show(dtype)
      }`,
    );
  }
  return dtype;
}

/** Rounds every value to the nearest float16 (in place) and returns the array. */
export function roundToF16(values: Float32Array): Float32Array {
  for (let i = 0; i < values.length; i++) values[i] = Math.f16round(values[i]);
  return values;
}

/** Unit roundoff of a dtype (half an ulp at 1). */
export function epsilon(dtype: DType): number {
  return dtype === "float16" ? 2 ** -11 : 2 ** -24;
}
