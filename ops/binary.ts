/**
 * Elementwise binary ops with NumPy broadcasting: `add`, `sub`, `mul`, `div`, `maximum`.
 * The second operand may be a JS number (a scalar of the first operand's dtype).
 *
 * @module
 */
import type { BinaryOp } from "../backends/backend.ts";
import { broadcastShapes } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import { ArgumentError } from "../tensor/errors.ts";
import { backendOf, describe, live, sameBackend, sameDType } from "./_util.ts";

function binaryOp(op: BinaryOp, name: string, a: Tensor, b: Tensor | number): Tensor {
  const x = live(name, "a", a);
  let scalar: Tensor | null = null;
  let y: Tensor;
  if (typeof b === "number") {
    // A 0-d tensor of a's dtype, so both operands agree; freed before returning.
    const values = Float32Array.of(x.dtype === "float16" ? Math.f16round(b) : b);
    scalar = new Tensor(x.backend, x.backend.upload(values, x.dtype), [], x.dtype);
    y = scalar;
  } else {
    if (!(b instanceof Tensor)) {
      throw new ArgumentError(`${name}: b must be a Tensor or a number, got ${describe(b)}`);
    }
    y = live(name, "b", b);
    sameBackend(name, x, y);
    sameDType(name, x, y);
  }
  try {
    const shape = broadcastShapes(x.shape, y.shape, name);
    const id = backendOf(name, x).binary(op, x, y, shape, x.dtype);
    return new Tensor(x.backend, id, shape, x.dtype);
  } finally {
    scalar?.dispose();
  }
}

/**
 * `a + b`, broadcasting.
 *
 * @example
 * ```ts
 * import { add, tensor } from "../mod.ts";
 * console.log(await add(tensor([[1], [2]]), tensor([10, 20])).toArray()); // [[11, 21], [12, 22]]
 * console.log(await add(tensor([1, 2]), 1).toArray()); // [2, 3]
 * ```
 */
export function add(a: Tensor, b: Tensor | number): Tensor {
  return binaryOp("add", "add", a, b);
}

/**
 * `a − b`, broadcasting.
 *
 * @example
 * ```ts
 * import { sub, tensor } from "../mod.ts";
 * console.log(await sub(tensor([3, 4]), tensor([1])).toArray()); // [2, 3]
 * ```
 */
export function sub(a: Tensor, b: Tensor | number): Tensor {
  return binaryOp("sub", "sub", a, b);
}

/**
 * `a · b` elementwise, broadcasting.
 *
 * @example
 * ```ts
 * import { mul, tensor } from "../mod.ts";
 * console.log(await mul(tensor([1, 2]), 0.5).toArray()); // [0.5, 1]
 * ```
 */
export function mul(a: Tensor, b: Tensor | number): Tensor {
  return binaryOp("mul", "mul", a, b);
}

/**
 * `a / b` elementwise, broadcasting (IEEE: `x/0 = ±∞`, `0/0 = NaN`).
 *
 * @example
 * ```ts
 * import { div, tensor } from "../mod.ts";
 * console.log(await div(tensor([1, 3]), 2).toArray()); // [0.5, 1.5]
 * ```
 */
export function div(a: Tensor, b: Tensor | number): Tensor {
  return binaryOp("div", "div", a, b);
}

/**
 * Elementwise maximum, broadcasting; NaN if either operand is NaN.
 *
 * @example
 * ```ts
 * import { maximum, tensor } from "../mod.ts";
 * console.log(await maximum(tensor([1, 5]), 3).toArray()); // [3, 5]
 * ```
 */
export function maximum(a: Tensor, b: Tensor | number): Tensor {
  return binaryOp("max", "maximum", a, b);
}
