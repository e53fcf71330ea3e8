/**
 * The `smax` function of the CPU attention's WebAssembly module (`_attention_simd.ts`): the
 * largest of each row's first `cnt[r]` scores of a tile, NaN where any of them is NaN (a NaN
 * score poisons its row, as in the float64 reference), −∞ for a row with no keys. A max is
 * exact, so the order of the lanes matters only to a tie of −0 and +0, which changes no p, sum
 * or output.
 *
 * @module
 */
import {
  addTo,
  body,
  type Code,
  extractF32,
  F32_MAX,
  f32Store,
  f32x4Const,
  get,
  I32_ADD,
  I32_LT_S,
  I32_MUL,
  i32c,
  i32Load,
  LANE_INDICES,
  lanesBelow,
  set,
  simd,
  v128Load,
  V_ANY_TRUE,
  V_BITSELECT,
  V_OR,
  V_ZERO,
  whileLoop,
  wordAt,
} from "./_wasm_encoding.ts";

/**
 * f32x4.pmax (`a < b ? b : a`, one `maxps`: f32x4.max's NaN and ±0 rules take several more
 * instructions on x64 and lengthen the chain) and f32x4.ne (a lane is NaN iff it is ≠ itself).
 */
const F32X4_PMAX = simd(0xeb), F32X4_NE = simd(0x42);

/**
 * `mx[r] = max_{j < cnt[r]} s[r·T + j]` (float32) for rows `r < R`. Two chains of `pmax` carry
 * the maxima and an OR of `x ≠ x` the NaNs. A row's last 1–3 scores go through one vector
 * whose lanes past the count are −∞, so up to 12 bytes past a row's count are read (as
 * `pexp` does).
 */
export function smax(): Code {
  // params s 0, R 1, T 2, cnt 3, mx 4
  const [s, R, T, cnt, mx] = [0, 1, 2, 3, 4];
  const [r, j, n, ptr] = [8, 9, 10, 11];
  const [m0, m1, nan, x, lanes, ninf] = [12, 13, 14, 15, 16, 17];
  /** Takes the vector that `load` pushes into chain `m` and its NaN lanes into `nan`. */
  const take = (m: number, load: Code): Code => [
    ...load,
    ...set(x),
    ...get(m),
    ...get(x),
    ...F32X4_PMAX,
    ...set(m),
    ...get(nan),
    ...get(x),
    ...get(x),
    ...F32X4_NE,
    ...V_OR,
    ...set(nan),
  ];
  const at = (off: number): Code => [...get(ptr), ...v128Load(off)];
  const lane = (i: number): Code => [...get(m0), ...extractF32(i)];
  return body(4, 6, [
    ...LANE_INDICES,
    ...set(lanes),
    ...f32x4Const(-Infinity),
    ...set(ninf),
    ...i32c(0),
    ...set(r),
    ...whileLoop([...get(r), ...get(R), ...I32_LT_S], [
      ...wordAt(cnt, r),
      ...i32Load,
      ...set(n),
      ...get(s),
      ...get(r),
      ...get(T),
      ...I32_MUL,
      ...i32c(4),
      ...I32_MUL,
      ...I32_ADD,
      ...set(ptr),
      ...get(ninf),
      ...set(m0),
      ...get(ninf),
      ...set(m1),
      ...V_ZERO,
      ...set(nan),
      ...i32c(0),
      ...set(j),
      // eight scores a trip, then four, then the last 1–3 with the lanes past the count −∞
      ...whileLoop([...get(j), ...i32c(7), ...I32_ADD, ...get(n), ...I32_LT_S], [
        ...take(m0, at(0)),
        ...take(m1, at(16)),
        ...addTo(ptr, i32c(32)),
        ...addTo(j, i32c(8)),
      ]),
      ...get(j),
      ...i32c(3),
      ...I32_ADD,
      ...get(n),
      ...I32_LT_S,
      0x04,
      0x40,
      ...take(m0, at(0)),
      ...addTo(ptr, i32c(16)),
      ...addTo(j, i32c(4)),
      0x0b,
      ...get(j),
      ...get(n),
      ...I32_LT_S,
      0x04,
      0x40,
      ...take(m1, [
        ...at(0),
        ...get(ninf),
        ...lanesBelow(lanes, n, j),
        ...V_BITSELECT,
      ]),
      0x0b,
      ...get(m0),
      ...get(m1),
      ...F32X4_PMAX,
      ...set(m0),
      // mx[r] = NaN if any lane was NaN, else the largest lane
      ...wordAt(mx, r),
      ...f32x4Const(NaN),
      ...extractF32(0),
      ...lane(0),
      ...lane(1),
      ...F32_MAX,
      ...lane(2),
      ...lane(3),
      ...F32_MAX,
      ...F32_MAX,
      ...get(nan),
      ...V_ANY_TRUE,
      0x1b,
      ...f32Store(0),
      ...addTo(r, i32c(1)),
    ]),
  ]);
}
