/**
 * Reductions: `sum` and `max` along one axis or over all elements.
 *
 * @module
 */
import type { ReduceOp } from "../backends/backend.ts";
import { ArgumentError, show } from "../tensor/errors.ts";
import { normAxis } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import { backendOf, live } from "./_util.ts";

function reduceOp(op: ReduceOp, x: Tensor, axis: number | undefined, keepDims: boolean): Tensor {
  const t = live(op, "x", x);
  if (typeof keepDims !== "boolean") {
    throw new ArgumentError(`${op}: keepDims must be a boolean, got ${show(keepDims)}`);
  }
  if (axis === undefined) {
    // All axes: one reduction of the flattened tensor (the reshape shares storage).
    const flat = t.reshape([t.size]);
    try {
      const id = backendOf(op, t).reduce(op, flat, 0);
      return new Tensor(t.backend, id, keepDims ? t.shape.map(() => 1) : [], t.dtype);
    } finally {
      flat.dispose();
    }
  }
  const a = normAxis(axis, t.rank, op);
  const shape = keepDims
    ? t.shape.map((d, i) => (i === a ? 1 : d))
    : t.shape.filter((_, i) => i !== a);
  return new Tensor(t.backend, backendOf(op, t).reduce(op, t, a), shape, t.dtype);
}

/**
 * Sum along `axis` (negative counts from the end) or over all elements when `axis` is
 * undefined. An empty sum is 0.
 *
 * @example
 * ```ts
 * import { sum, tensor } from "../mod.ts";
 * const x = tensor([[1, 2], [3, 4]]);
 * console.log(await sum(x).toArray()); // 10
 * console.log(await sum(x, -1, true).toArray()); // [[3], [7]]
 * ```
 */
export function sum(x: Tensor, axis?: number, keepDims = false): Tensor {
  return reduceOp("sum", x, axis, keepDims);
}

/**
 * Maximum along `axis` (negative counts from the end) or over all elements when `axis` is
 * undefined. The max of nothing is −∞; NaN propagates.
 *
 * @example
 * ```ts
 * import { max, tensor } from "../mod.ts";
 * console.log(await max(tensor([[1, 5], [3, 4]]), 0).toArray()); // [3, 5]
 * ```
 */
export function max(x: Tensor, axis?: number, keepDims = false): Tensor {
  return reduceOp("max", x, axis, keepDims);
}
