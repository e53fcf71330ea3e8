/**
 * The `dq8` function of the CPU attention's WebAssembly module (`_attention_simd.ts`): int8 K/V
 * rows → float32 rows `scale · value`, sixteen values a step. The float32 product of a float32
 * scale and an int8 value is the correctly rounded exact product, as `la.dequantize` gives it
 * (`_kv_quant.ts`), so the staged tile has the same bits as the JavaScript loop's.
 *
 * @module
 */
import {
  addTo,
  body,
  type Code,
  F32X4_MUL,
  get,
  I32_ADD,
  I32_LT_S,
  I32_MUL,
  i32c,
  I32X4_EXTEND_HIGH_I16X8_S,
  I32X4_EXTEND_LOW_I16X8_S,
  set,
  simd,
  v128Load,
  v128Store,
  whileLoop,
} from "./_wasm_encoding.ts";

const I16X8_EXTEND_LOW_I8X16_S = simd(0x87), I16X8_EXTEND_HIGH_I8X16_S = simd(0x88);
const F32X4_CONVERT_I32X4_S = simd(0xfa), F32X4_SPLAT = simd(0x13);
const F32_LOAD = [0x2a, 2, 0];

export function dq8(): Code {
  // params src 0 (n rows of D int8 values, packed), scales 1 (n float32), dst 2 (rows Dp
  // float32 apart), n 3, D 4 (a multiple of 16), Dp 5; i32 locals i, d, sp, dp, at; v128
  // locals s (the row's scale in every lane), x (16 bytes), h (eight of them widened).
  const [src, scales, dst, n, D, Dp] = [0, 1, 2, 3, 4, 5];
  const [i, d, sp, dp, at] = [8, 9, 10, 11, 12];
  const [s, x, h] = [13, 14, 15];
  /** `stack: h` (i16x8) → half `hi` of it as float32x4, times the scale, stored at `off`. */
  const quarter = (hi: boolean, off: number): Code => [
    ...get(at),
    ...get(h),
    ...(hi ? I32X4_EXTEND_HIGH_I16X8_S : I32X4_EXTEND_LOW_I16X8_S),
    ...F32X4_CONVERT_I32X4_S,
    ...get(s),
    ...F32X4_MUL,
    ...v128Store(off),
  ];
  return body(5, 3, [
    ...get(src),
    ...set(sp),
    ...get(dst),
    ...set(dp),
    ...i32c(0),
    ...set(i),
    ...whileLoop([...get(i), ...get(n), ...I32_LT_S], [
      ...get(scales),
      ...get(i),
      ...i32c(4),
      ...I32_MUL,
      ...I32_ADD,
      ...F32_LOAD,
      ...F32X4_SPLAT,
      ...set(s),
      ...i32c(0),
      ...set(d),
      ...whileLoop([...get(d), ...get(D), ...I32_LT_S], [
        ...get(sp),
        ...get(d),
        ...I32_ADD,
        ...v128Load(0),
        ...set(x),
        ...get(dp),
        ...get(d),
        ...i32c(4),
        ...I32_MUL,
        ...I32_ADD,
        ...set(at),
        ...get(x),
        ...I16X8_EXTEND_LOW_I8X16_S,
        ...set(h),
        ...quarter(false, 0),
        ...quarter(true, 16),
        ...get(x),
        ...I16X8_EXTEND_HIGH_I8X16_S,
        ...set(h),
        ...quarter(false, 32),
        ...quarter(true, 48),
        ...addTo(d, i32c(16)),
      ]),
      ...addTo(sp, get(D)),
      ...get(dp),
      ...get(Dp),
      ...i32c(4),
      ...I32_MUL,
      ...I32_ADD,
      ...set(dp),
      ...addTo(i, i32c(1)),
    ]),
  ]);
}
