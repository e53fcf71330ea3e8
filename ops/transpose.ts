/**
 * Axis permutation.
 *
 * @module
 */
import { ShapeError, show } from "../tensor/errors.ts";
import { fmt } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import { backendOf, live } from "./_util.ts";

/**
 * Permutes the axes: output dimension `i` is input dimension `perm[i]` (default: reversed).
 * Negative entries count from the end. The result is a contiguous copy.
 *
 * @example
 * ```ts
 * import { tensor, transpose } from "../mod.ts";
 * console.log(await transpose(tensor([[1, 2, 3], [4, 5, 6]])).toArray()); // [[1, 4], [2, 5], [3, 6]]
 * ```
 */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const t = live("transpose", "x", x);
  const r = t.rank;
  let p: number[];
  if (perm === undefined) {
    p = t.shape.map((_, i) => r - 1 - i);
  } else {
    const bad = () =>
      new ShapeError(
        `transpose: perm must be a permutation of 0..${r - 1} for shape ${fmt(t.shape)}, got ${
          show(perm)
        }`,
      );
    if (!Array.isArray(perm) || perm.length !== r) throw bad();
    p = perm.map((a) => (Number.isInteger(a) && a < 0 ? a + r : a));
    const seen = new Set<number>();
    for (const a of p) {
      if (!Number.isInteger(a) || a < 0 || a >= r || seen.has(a)) throw bad();
      seen.add(a);
    }
  }
  const shape = p.map((a) => t.shape[a]);
  return new Tensor(t.backend, backendOf("transpose", t).transpose(t, p), shape, t.dtype);
}
