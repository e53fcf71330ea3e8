/**
 * Interop with scijs `ndarray`: views with any strides and offset (transposed, stepped,
 * sliced, negative strides) come in; a contiguous float32 ndarray goes out.
 *
 * @module
 */
// @ts-types="@types/ndarray"
import ndarray from "ndarray";
import { checkDType, type DType } from "./dtype.ts";
import { ArgumentError, show } from "./errors.ts";
import { type CreationOptions, fromValues } from "./creation.ts";
import { checkShape, sizeOf } from "./shape.ts";
import type { Tensor } from "./tensor.ts";

/**
 * What {@link fromNdarray} reads of an ndarray: element `(i0, i1, ...)` is
 * `data[offset + Σ i_d · stride_d]`. Any scijs ndarray (or look-alike) fits.
 */
export interface NdArrayLike {
  /** Element storage: an array-like, or an object with `get(index)`. */
  readonly data: ArrayLike<number> | { get(index: number): number };
  /** Dimensions. */
  readonly shape: readonly number[];
  /** Elements to skip per step along each dimension (may be negative). */
  readonly stride: readonly number[];
  /** Index of element `(0, 0, ...)` in `data`. */
  readonly offset: number;
}

/**
 * A scijs ndarray as returned by {@link toNdarray} (declared here so the public API does not
 * depend on the package's type definitions).
 */
export interface NdArray<D extends ArrayLike<number> = Float32Array> extends NdArrayLike {
  /** Element storage. */
  readonly data: D;
  /** Dimensions. */
  readonly shape: number[];
  /** Strides, in elements. */
  readonly stride: number[];
  /** Index of element `(0, 0, ...)` in `data`. */
  readonly offset: number;
  /** Number of elements. */
  readonly size: number;
  /** Number of dimensions. */
  readonly dimension: number;
  /** The element at the given indices. */
  get(...indices: number[]): number;
  /** Sets the element at the given indices (the last argument is the value). */
  set(...indicesThenValue: number[]): number;
  /** The storage index of the element at the given indices. */
  index(...indices: number[]): number;
  /** A view starting at the given indices. */
  lo(...indices: number[]): NdArray<D>;
  /** A view ending before the given indices. */
  hi(...indices: number[]): NdArray<D>;
  /** A view taking every n-th element per dimension (negative: reversed). */
  step(...steps: number[]): NdArray<D>;
  /** A view with permuted axes. */
  transpose(...axes: number[]): NdArray<D>;
  /** A view with the given dimensions fixed (`null` keeps one). */
  pick(...indices: (number | null)[]): NdArray<D>;
}

/**
 * A tensor holding the elements an ndarray view addresses (`offset + Σ i_d · stride_d`), in
 * row-major order. The dtype defaults to float16 for `Float16Array` data, else float32.
 *
 * @example
 * ```ts
 * import ndarray from "ndarray";
 * import { fromNdarray } from "../mod.ts";
 * const nd = ndarray(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
 * console.log(await fromNdarray(nd.transpose(1, 0)).toArray()); // [[1, 4], [2, 5], [3, 6]]
 * ```
 */
export function fromNdarray(nd: NdArrayLike, opts: CreationOptions = {}): Tensor {
  if (
    nd === null || typeof nd !== "object" || !Array.isArray(nd.shape) ||
    !Array.isArray(nd.stride) || nd.stride.length !== nd.shape.length ||
    typeof nd.offset !== "number" || nd.data == null
  ) {
    throw new ArgumentError(
      `fromNdarray: expected an ndarray (data, shape, stride, offset), got ${show(nd)}`,
    );
  }
  const shape = checkShape([...nd.shape], "fromNdarray");
  const data = nd.data as unknown;
  const get: (i: number) => number = typeof (data as { get?: unknown }).get === "function"
    ? (i) => Number((data as { get(index: number): number }).get(i))
    : (i) => Number((data as ArrayLike<number>)[i]);
  const n = sizeOf(shape);
  const values = new Float32Array(n);
  const r = shape.length;
  if (n > 0) {
    // Odometer over the view; `src` follows the strides (which may be negative).
    const idx = new Array<number>(r).fill(0);
    let src = nd.offset;
    for (let o = 0; o < n; o++) {
      values[o] = get(src);
      for (let d = r - 1; d >= 0; d--) {
        idx[d]++;
        src += nd.stride[d];
        if (idx[d] < shape[d]) break;
        src -= nd.stride[d] * idx[d];
        idx[d] = 0;
      }
    }
  }
  const dtype: DType = opts.dtype !== undefined
    ? checkDType(opts.dtype, "fromNdarray")
    : data instanceof Float16Array
    ? "float16"
    : "float32";
  return fromValues(values, shape, { ...opts, dtype });
}

/**
 * The tensor's values as a contiguous row-major ndarray over a fresh `Float32Array`.
 *
 * @example
 * ```ts
 * import { tensor, toNdarray } from "../mod.ts";
 * const nd = await toNdarray(tensor([[1, 2], [3, 4]]));
 * console.log(nd.get(1, 0)); // 3
 * ```
 */
export async function toNdarray(t: Tensor): Promise<NdArray<Float32Array>> {
  const values = await t.data();
  return ndarray(values, [...t.shape]);
}
