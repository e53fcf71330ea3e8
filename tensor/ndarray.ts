/**
 * Interop with scijs `ndarray`: views with any strides and offset (transposed, stepped,
 * sliced, negative strides) come in; a contiguous float32 ndarray goes out.
 *
 * @module
 */
import { checkDType, type DType } from "./dtype.ts";
import { ArgumentError, LeanattnError, show } from "./errors.ts";
import { type CreationOptions, fromValues } from "./creation.ts";
import { checkShape, sizeOf } from "./shape.ts";
import { Tensor } from "./tensor.ts";
import type { NdArray, NdArrayLike } from "./ndarray_types.ts";

export type { NdArray, NdArrayLike };

/**
 * A tensor holding the elements an ndarray view addresses (`offset + Σ i_d · stride_d`), in
 * row-major order. The dtype defaults to float16 for `Float16Array` data, else float32.
 *
 * @example
 * ```ts
 * import ndarray from "npm:ndarray@1.1.1";
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
  // Read as float64 first: a value float32/float16 cannot hold must raise, not become ±Infinity.
  const raw = new Float64Array(n);
  const r = shape.length;
  if (n > 0) {
    // Odometer over the view; `src` follows the strides (which may be negative).
    const idx = new Array<number>(r).fill(0);
    let src = nd.offset;
    for (let o = 0; o < n; o++) {
      raw[o] = get(src);
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
  return fromValues(Float32Array.from(raw), shape, { ...opts, dtype }, {
    op: "fromNdarray",
    values: raw,
  });
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
export function toNdarray(t: Tensor): Promise<NdArray<Float32Array>> {
  if (!(t instanceof Tensor)) {
    return Promise.reject(new ArgumentError(`toNdarray: expected a Tensor, got ${show(t)}`));
  }
  try {
    t.id; // throws DisposedTensorError after dispose()
  } catch (e) {
    if (e instanceof LeanattnError) return Promise.reject(e);
    // `instanceof` holds for a Proxy of a Tensor, whose private state it cannot reach.
    return Promise.reject(new ArgumentError("toNdarray: expected a Tensor, got a Proxy of one"));
  }
  return t.toNdarray();
}
