/**
 * The `cvt16` function of the CPU attention's WebAssembly module (`_attention_simd.ts`):
 * float16 → float32 by bit operations, eight halves a step.
 *
 * @module
 */
import {
  addTo,
  body,
  type Code,
  F32X4_ABS,
  F32X4_GE,
  F32X4_MUL,
  F32X4_MUL_BY,
  get,
  I16X8_GT_U,
  I16X8_MAX_U,
  I32_LT_S,
  i32c,
  I32X4_EXTEND_HIGH_I16X8_S,
  I32X4_EXTEND_LOW_I16X8_S,
  I32X4_SHL,
  i32x4Const,
  load16x4S,
  set,
  v128Load,
  v128Store,
  V_AND,
  V_ANY_TRUE,
  V_OR,
  V_ZERO,
  whileLoop,
} from "./_wasm_encoding.ts";

export function cvt16(): Code {
  // params src 0, dst 1, n 2 (a multiple of 8); i32 locals s0, d0, n0 (the arguments, kept for
  // the exact pass); v128 locals: x, b, f, mx, then the constants (hoisted into locals so the
  // loop does not rematerialise them)
  const [src, dst, n, s0, d0, n0] = [0, 1, 2, 8, 9, 10];
  const [x, b, f, mx] = [11, 12, 13, 14];
  const [cKeep, cBias, cBig, cInf, cMag16] = [15, 16, 17, 18, 19];
  const init = [
    ...i32x4Const(0x8fffe000),
    ...set(cKeep),
    ...i32x4Const(0x77800000),
    ...set(cBias),
    ...i32x4Const(0x47800000),
    ...set(cBig),
    ...i32x4Const(0x7f800000),
    ...set(cInf),
    ...i32x4Const(0x7fff7fff),
    ...set(cMag16),
    ...V_ZERO,
    ...set(mx),
    ...get(src),
    ...set(s0),
    ...get(dst),
    ...set(d0),
    ...get(n),
    ...set(n0),
  ];
  // Sign-extended half << 13, masked: the sign at bit 31 and exponent·mantissa at bits 13..27,
  // i.e. a float32 2^112 times too small (float16 subnormals become float32 subnormals), so one
  // multiply by 2^112 is exact for every finite half.
  const finite = (extend: Code, off: number): Code => [
    ...get(dst),
    ...get(x),
    ...extend,
    ...i32c(13),
    ...I32X4_SHL,
    ...get(cKeep),
    ...V_AND,
    ...F32X4_MUL_BY(cBias),
    ...v128Store(off),
  ];
  // Fast pass: eight halves a step, tracking the largest magnitude bits seen.
  const fast = [
    ...get(src),
    ...v128Load(0),
    ...set(x),
    ...get(mx),
    ...get(x),
    ...get(cMag16),
    ...V_AND,
    ...I16X8_MAX_U,
    ...set(mx),
    ...finite(I32X4_EXTEND_LOW_I16X8_S, 0),
    ...finite(I32X4_EXTEND_HIGH_I16X8_S, 16),
    ...addTo(src, i32c(16)),
    ...addTo(dst, i32c(32)),
    ...addTo(n, i32c(-8)),
  ];
  // Exact pass (only when the tile holds an inf or NaN half): those land at |f| ≥ 2^16 (the
  // largest finite half is 65504), and OR-ing the exponent to all ones keeps sign and mantissa.
  const four = (off: number): Code => [
    ...get(dst),
    ...get(src),
    ...load16x4S(off),
    ...i32c(13),
    ...I32X4_SHL,
    ...get(cKeep),
    ...V_AND,
    ...set(b),
    ...get(b),
    ...get(cBias),
    ...F32X4_MUL,
    ...set(f),
    ...get(f),
    ...get(f),
    ...F32X4_ABS,
    ...get(cBig),
    ...F32X4_GE,
    ...get(cInf),
    ...V_AND,
    ...V_OR,
    ...v128Store(2 * off),
  ];
  const exact = [
    ...four(0),
    ...four(8),
    ...addTo(src, i32c(16)),
    ...addTo(dst, i32c(32)),
    ...addTo(n, i32c(-8)),
  ];
  return body(3, 9, [
    ...init,
    ...whileLoop([...i32c(0), ...get(n), ...I32_LT_S], fast),
    ...get(mx),
    ...i32x4Const(0x7bff7bff),
    ...I16X8_GT_U,
    ...V_ANY_TRUE,
    0x04,
    0x40,
    ...get(s0),
    ...set(src),
    ...get(d0),
    ...set(dst),
    ...get(n0),
    ...set(n),
    ...whileLoop([...i32c(0), ...get(n), ...I32_LT_S], exact),
    0x0b,
  ]);
}
