/**
 * Softmax along one axis.
 *
 * @module
 */
import { normAxis } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import { backendOf, live } from "./_util.ts";

/**
 * Numerically stable softmax along `axis` (default: the last). A slice that is all −∞ (fully
 * masked) gives zeros rather than NaN.
 *
 * @example
 * ```ts
 * import { softmax, tensor } from "../mod.ts";
 * console.log(await softmax(tensor([0, Math.log(3)])).toArray()); // [0.25, 0.75]
 * ```
 */
export function softmax(x: Tensor, axis = -1): Tensor {
  const t = live("softmax", "x", x);
  const a = normAxis(axis, t.rank, "softmax");
  return new Tensor(t.backend, backendOf("softmax", t).softmax(t, a), t.shape, t.dtype);
}
