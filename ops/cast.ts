/**
 * Storage dtype conversion.
 *
 * @module
 */
import { checkComputeDType, checkDType, type DType } from "../tensor/dtype.ts";
import { Tensor } from "../tensor/tensor.ts";
import { backendOf, live } from "./_util.ts";

/**
 * A copy of `x` stored as `dtype` (to float16 values round to nearest even). Between float32
 * and float16 only: quantized dtypes (`int8`, `float8e4m3`) carry scales a cast cannot know,
 * so they are a {@link DTypeError} here (`la.quantize` / `la.dequantize` convert them).
 *
 * @example
 * ```ts
 * import { cast, tensor } from "../mod.ts";
 * console.log(await cast(tensor([0.1]), "float16").toArray()); // [0.0999755859375]
 * ```
 */
export function cast(x: Tensor, dtype: DType): Tensor {
  const t = live("cast", "x", x);
  const d = checkComputeDType("cast", checkDType(dtype, "cast"), "the target dtype");
  return new Tensor(t.backend, backendOf("cast", t).cast(t, d), t.shape, d);
}
