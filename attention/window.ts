/**
 * Sliding windows as other libraries spell them, mapped to leanattn's `window: { left,
 * right }` (a query at position `p` sees keys at positions `p − left .. p + right`, both ends
 * included; positions as in VARIANTS.md: the last query row sits at the last key).
 *
 * | Convention | leanattn |
 * | --- | --- |
 * | FlashAttention 2/3 `window_size=(l, r)`, `-1` = unlimited | `{ left: l, right: r }` (a side of −1 left out) |
 * | ONNX Runtime GroupQueryAttention `local_window_size = W` (`-1` = none), causal | `{ left: W }` with `causal: true` |
 * | A model card's "sliding window of W tokens" (the current token counts) | `{ left: W − 1 }` with `causal: true` |
 *
 * Mistral 7B's "sliding window 4096" and Gemma 2's 4096 are the model-card convention as
 * Hugging Face configs state them (`sliding_window`), checked against each model's code
 * before use: some implementations count the current token, some do not.
 *
 * @module
 */
import { ArgumentError, show } from "../tensor/errors.ts";
import type { AttentionWindow } from "./_variant.ts";

function side(op: string, name: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    throw new ArgumentError(`${op}: ${name} must be an integer ≥ ${min}, got ${show(v)}`);
  }
  return v;
}

/**
 * FlashAttention's `window_size=(left, right)` (`-1`: unlimited on that side) as a leanattn
 * window. FlashAttention aligns query i to key `i + Sk − Sq` as leanattn does.
 *
 * @example
 * ```ts
 * import { windowFromFlashAttention } from "../mod.ts";
 * console.log(windowFromFlashAttention(256, 0)); // { left: 256, right: 0 }
 * console.log(windowFromFlashAttention(-1, -1)); // {}
 * ```
 */
export function windowFromFlashAttention(left: number, right: number): AttentionWindow {
  const op = "windowFromFlashAttention";
  const l = side(op, "left", left, -1);
  const r = side(op, "right", right, -1);
  return { ...(l >= 0 ? { left: l } : {}), ...(r >= 0 ? { right: r } : {}) };
}

/**
 * ONNX Runtime GroupQueryAttention's `local_window_size` (`-1`: no window) as a leanattn
 * window; use it with `causal: true` (GroupQueryAttention is causal). A query then sees
 * itself and the W keys before it.
 *
 * @example
 * ```ts
 * import { windowFromOnnxRuntime } from "../mod.ts";
 * console.log(windowFromOnnxRuntime(32)); // { left: 32 }
 * ```
 */
export function windowFromOnnxRuntime(localWindowSize: number): AttentionWindow {
  const w = side("windowFromOnnxRuntime", "localWindowSize", localWindowSize, -1);
  return w >= 0 ? { left: w } : {};
}

/**
 * A model card's "sliding window of W tokens", counting the current token, as a leanattn
 * window (`{ left: W − 1 }`); use it with `causal: true`.
 *
 * @example
 * ```ts
 * import { windowFromModelCard } from "../mod.ts";
 * console.log(windowFromModelCard(4096)); // { left: 4095 }
 * ```
 */
export function windowFromModelCard(tokens: number): AttentionWindow {
  return { left: side("windowFromModelCard", "tokens", tokens, 1) - 1 };
}
