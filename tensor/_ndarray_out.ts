/**
 * Values and a shape as a contiguous scijs ndarray. Its own module so that `Tensor` loads the
 * npm package only when `toNdarray` is first called, and without importing ndarray.ts (which
 * imports the creation functions, which import `Tensor`).
 *
 * @module
 */
// @ts-types="npm:@types/ndarray@1.1.0"
import ndarray from "npm:ndarray@1.1.1";
import type { NdArray } from "./ndarray_types.ts";

/** A row-major ndarray over `values` (not copied). */
export function ndarrayOf(values: Float32Array, shape: readonly number[]): NdArray<Float32Array> {
  return ndarray(values, [...shape]);
}
