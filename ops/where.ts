/**
 * `where`: elementwise select with NumPy broadcasting.
 *
 * Masking by selection rather than by arithmetic: `where(mask, x, -Infinity)` replaces the
 * hidden entries of `x`, whereas `x + maskOfMinusInfinity` still computes `NaN + −∞ = NaN`
 * and `∞ + −∞ = NaN` for hidden NaN or ∞ entries.
 *
 * @module
 */
import { broadcastShapes, fmt } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { DType } from "../tensor/dtype.ts";
import { ArgumentError, ShapeError } from "../tensor/errors.ts";
import { describe, live, sameBackend, sameDType } from "./_util.ts";

/**
 * `a` where `cond` is nonzero, else `b`, elementwise, broadcasting all three shapes
 * together. NaN in `cond` counts as nonzero (as in NumPy). The value not chosen is never
 * combined with the result, so a NaN or ∞ there cannot leak into it.
 *
 * `cond` may have either dtype; `a` and `b` must share one, which is the output's. Either of
 * `a` and `b` may be a JS number, a scalar of the other operand's dtype (float32 if both are
 * numbers).
 *
 * @example
 * ```ts
 * import { tensor, where } from "../mod.ts";
 * const mask = tensor([1, 0, 1]);
 * const x = tensor([NaN, NaN, 3]);
 * console.log(await where(mask, x, -Infinity).toArray()); // [NaN, -Infinity, 3]
 * console.log(await where(tensor([[1], [0]]), 5, tensor([7, 8])).toArray()); // [[5, 5], [7, 8]]
 * ```
 */
export function where(cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  const op = "where";
  const c = live(op, "cond", cond);
  for (const [name, x] of [["a", a], ["b", b]] as const) {
    if (typeof x !== "number" && !(x instanceof Tensor)) {
      throw new ArgumentError(`${op}: ${name} must be a Tensor or a number, got ${describe(x)}`);
    }
  }
  const ta = typeof a === "number" ? null : live(op, "a", a);
  const tb = typeof b === "number" ? null : live(op, "b", b);
  const backend = sameBackend(op, c, ...(ta ? [ta] : []), ...(tb ? [tb] : []));
  if (ta && tb) sameDType(op, ta, tb);
  const dtype: DType = ta?.dtype ?? tb?.dtype ?? "float32";
  // Scalars become 0-d tensors of the output dtype, freed before returning.
  const scalars: Tensor[] = [];
  const asTensor = (x: Tensor | null, v: Tensor | number): Tensor => {
    if (x) return x;
    const value = dtype === "float16" ? Math.f16round(v as number) : v as number;
    const t = new Tensor(backend, backend.upload(Float32Array.of(value), dtype), [], dtype);
    scalars.push(t);
    return t;
  };
  try {
    const shape = broadcast3(c, ta, tb);
    const x = asTensor(ta, a);
    const y = asTensor(tb, b);
    const id = backend.where(c, x, y, shape, dtype);
    return new Tensor(backend, id, shape, dtype);
  } finally {
    for (const s of scalars) s.dispose();
  }
}

function broadcast3(c: Tensor, a: Tensor | null, b: Tensor | null): number[] {
  try {
    return broadcastShapes(broadcastShapes(c.shape, a?.shape ?? [], "where"), b?.shape ?? []);
  } catch (e) {
    if (!(e instanceof ShapeError)) throw e;
    const s = (t: Tensor | null) => (t ? fmt(t.shape) : "scalar");
    throw new ShapeError(
      `where: shapes cond ${fmt(c.shape)}, a ${s(a)} and b ${s(b)} cannot be broadcast together`,
    );
  }
}
