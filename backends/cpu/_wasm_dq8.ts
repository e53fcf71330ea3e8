/**
 * The `dq8` and `dqe4m3` functions of the CPU attention's WebAssembly module
 * (`_attention_simd.ts`): int8 or float8e4m3 K/V rows → float32 rows `scale · value`, sixteen
 * values a step. The float32 product of a float32 scale and an 8-bit value is the correctly
 * rounded exact product, as `la.dequantize` gives it (`_kv_quant.ts`), so the staged tile has
 * the same bits as the JavaScript loop's.
 *
 * An E4M3 code's 7 magnitude bits shifted left by 20 are the float32 bits of its value times
 * 2⁻¹²⁰ (exponent bias 7 against 127; E4M3's subnormals land on float32's), so one exact
 * multiply by 2¹²⁰ decodes every finite code; the sign bit goes to bit 31, and the NaN codes
 * (magnitude 0x7f) are selected to float32's quiet NaN after the scale, as a JavaScript store
 * of a NaN product writes it.
 *
 * @module
 */
import {
  addTo,
  body,
  type Code,
  F32X4_MUL,
  f32x4Const,
  get,
  I32_ADD,
  I32_LT_S,
  I32_MUL,
  i32c,
  I32X4_EXTEND_HIGH_I16X8_S,
  I32X4_EXTEND_LOW_I16X8_S,
  I32X4_SHL,
  i32x4Const,
  set,
  simd,
  v128Load,
  v128Store,
  V_AND,
  V_BITSELECT,
  V_OR,
  whileLoop,
} from "./_wasm_encoding.ts";

const I16X8_EXTEND_LOW_I8X16_S = simd(0x87), I16X8_EXTEND_HIGH_I8X16_S = simd(0x88);
const I16X8_EXTEND_LOW_I8X16_U = simd(0x89), I16X8_EXTEND_HIGH_I8X16_U = simd(0x8a);
const I32X4_EXTEND_LOW_I16X8_U = simd(0xa9), I32X4_EXTEND_HIGH_I16X8_U = simd(0xaa);
const F32X4_CONVERT_I32X4_S = simd(0xfa), F32X4_SPLAT = simd(0x13), I32X4_NE = simd(0x38);
const F32_LOAD = [0x2a, 2, 0];

/** Which 8-bit format a staging function decodes. */
export type Dq8Format = "int8" | "e4m3";

export function dq8(fmt: Dq8Format): Code {
  const e4m3 = fmt === "e4m3";
  // params src 0 (n rows of D 8-bit codes, packed), scales 1 (n float32), dst 2 (rows Dp
  // float32 apart), n 3, D 4 (a multiple of 16), Dp 5; i32 locals i, d, sp, dp, at; v128
  // locals s (the row's scale in every lane), x (16 bytes), h (eight of them widened); for
  // E4M3 w (four codes widened), m (their magnitudes), pow120 (2¹²⁰ in every lane).
  const [src, scales, dst, n, D, Dp] = [0, 1, 2, 3, 4, 5];
  const [i, d, sp, dp, at] = [8, 9, 10, 11, 12];
  const [s, x, h, w, m, pow120] = [13, 14, 15, 16, 17, 18];
  const [c7f, cSign, cNaN] = [19, 20, 21]; // E4M3's constants, made once a call
  /** Half `hi` of `h` (eight widened codes) as float32x4, times the scale, stored at `at + off`. */
  const quarter = (hi: boolean, off: number): Code => [
    ...get(at),
    ...(e4m3 ? e4m3Quarter(hi) : [
      ...get(h),
      ...(hi ? I32X4_EXTEND_HIGH_I16X8_S : I32X4_EXTEND_LOW_I16X8_S),
      ...F32X4_CONVERT_I32X4_S,
      ...get(s),
      ...F32X4_MUL,
    ]),
    ...v128Store(off),
  ];
  /** The four E4M3 codes of half `hi` of `h` (u16 lanes) decoded and scaled (see above). */
  const e4m3Quarter = (hi: boolean): Code => [
    ...get(h),
    ...(hi ? I32X4_EXTEND_HIGH_I16X8_U : I32X4_EXTEND_LOW_I16X8_U),
    ...set(w),
    ...get(w),
    ...get(c7f),
    ...V_AND,
    ...set(m),
    ...get(m),
    ...i32c(20),
    ...I32X4_SHL,
    ...get(pow120),
    ...F32X4_MUL,
    ...get(w),
    ...i32c(24),
    ...I32X4_SHL,
    ...get(cSign),
    ...V_AND,
    ...V_OR,
    ...get(s),
    ...F32X4_MUL,
    ...get(cNaN),
    // bitselect(value, NaN, m ≠ 0x7f): the value where the code is not a NaN
    ...get(m),
    ...get(c7f),
    ...I32X4_NE,
    ...V_BITSELECT,
  ];
  return body(5, 9, [
    ...f32x4Const(2 ** 120),
    ...set(pow120),
    ...i32x4Const(0x7f),
    ...set(c7f),
    ...i32x4Const(0x80000000 | 0),
    ...set(cSign),
    ...i32x4Const(0x7fc00000),
    ...set(cNaN),
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
        ...(e4m3 ? I16X8_EXTEND_LOW_I8X16_U : I16X8_EXTEND_LOW_I8X16_S),
        ...set(h),
        ...quarter(false, 0),
        ...quarter(true, 16),
        ...get(x),
        ...(e4m3 ? I16X8_EXTEND_HIGH_I8X16_U : I16X8_EXTEND_HIGH_I8X16_S),
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
