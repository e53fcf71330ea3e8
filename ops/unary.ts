/**
 * Elementwise unary ops: `exp`, `neg`, `log`, `tanh`.
 *
 * @module
 */
import type { UnaryOp } from "../backends/backend.ts";
import { Tensor } from "../tensor/tensor.ts";
import { backendOf, live } from "./_util.ts";

function unaryOp(op: UnaryOp, x: Tensor): Tensor {
  const t = live(op, "x", x);
  return new Tensor(t.backend, backendOf(op, t).unary(op, t), t.shape, t.dtype);
}

/**
 * Elementwise `e^x` (same shape and dtype).
 *
 * @example
 * ```ts
 * import { exp, tensor } from "../mod.ts";
 * console.log(await exp(tensor([0, 1])).toArray()); // [1, 2.7182817459106445]
 * ```
 */
export function exp(x: Tensor): Tensor {
  return unaryOp("exp", x);
}

/**
 * Elementwise `−x` (same shape and dtype).
 *
 * @example
 * ```ts
 * import { neg, tensor } from "../mod.ts";
 * console.log(await neg(tensor([1, -2])).toArray()); // [-1, 2]
 * ```
 */
export function neg(x: Tensor): Tensor {
  return unaryOp("neg", x);
}

/**
 * Elementwise natural logarithm (same shape and dtype); `log(0) = −∞`, negative → NaN.
 *
 * @example
 * ```ts
 * import { log, tensor } from "../mod.ts";
 * console.log(await log(tensor([1, 0])).toArray()); // [0, -Infinity]
 * ```
 */
export function log(x: Tensor): Tensor {
  return unaryOp("log", x);
}

/**
 * Elementwise hyperbolic tangent (same shape and dtype); `tanh(±∞) = ±1`.
 *
 * @example
 * ```ts
 * import { tanh, tensor } from "../mod.ts";
 * console.log(await tanh(tensor([0, Infinity])).toArray()); // [0, 1]
 * ```
 */
export function tanh(x: Tensor): Tensor {
  return unaryOp("tanh", x);
}
