/**
 * Batched matrix multiplication with broadcasting leading dimensions.
 *
 * @module
 */
import { ArgumentError, ShapeError, show } from "../tensor/errors.ts";
import { broadcastShapes, fmt } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import { backendOf, live, sameBackend, sameDType } from "./_util.ts";
import { readOptions } from "../tensor/options.ts";

/** Options of {@link matmul}. */
export interface MatmulOptions {
  /** Use the transpose of `a`'s last two dimensions. */
  transposeA?: boolean;
  /** Use the transpose of `b`'s last two dimensions (e.g. `q · kᵀ`). */
  transposeB?: boolean;
}

/**
 * `a × b` over the last two dimensions: `[..., M, K] × [..., K, N] → [..., M, N]`; the leading
 * (batch) dimensions broadcast. Both operands need rank ≥ 2 and one dtype.
 *
 * @example
 * ```ts
 * import { matmul, tensor } from "../mod.ts";
 * const a = tensor([[1, 2], [3, 4]]);
 * console.log(await matmul(a, a, { transposeB: true }).toArray()); // [[5, 11], [11, 25]]
 * ```
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const x = live("matmul", "a", a);
  const y = live("matmul", "b", b);
  const opts = readOptions<MatmulOptions>("matmul", options, ["transposeA", "transposeB"]);
  const tA = opts.transposeA ?? false;
  const tB = opts.transposeB ?? false;
  if (typeof tA !== "boolean" || typeof tB !== "boolean") {
    throw new ArgumentError(
      `matmul: transposeA/transposeB must be booleans, got ${show(tA)}, ${show(tB)}`,
    );
  }
  sameBackend("matmul", x, y);
  const dtype = sameDType("matmul", x, y);
  if (x.rank < 2 || y.rank < 2) {
    throw new ShapeError(
      `matmul: both operands need rank ≥ 2, got a ${fmt(x.shape)} and b ${fmt(y.shape)}`,
    );
  }
  const ra = x.rank;
  const rb = y.rank;
  const [M, Ka] = tA ? [x.shape[ra - 1], x.shape[ra - 2]] : [x.shape[ra - 2], x.shape[ra - 1]];
  const [Kb, N] = tB ? [y.shape[rb - 1], y.shape[rb - 2]] : [y.shape[rb - 2], y.shape[rb - 1]];
  if (Ka !== Kb) {
    throw new ShapeError(
      `matmul: inner dimensions differ: a ${fmt(x.shape)}${tA ? "ᵀ" : ""} has K=${Ka}, b ${
        fmt(y.shape)
      }${tB ? "ᵀ" : ""} has K=${Kb}`,
    );
  }
  const batch = broadcastShapes(x.shape.slice(0, ra - 2), y.shape.slice(0, rb - 2), "matmul");
  const shape = [...batch, M, N];
  const id = backendOf("matmul", x).matmul(x, y, tA, tB, shape, dtype);
  return new Tensor(x.backend, id, shape, dtype);
}
