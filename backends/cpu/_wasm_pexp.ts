/**
 * The `pexp` function of the CPU attention's WebAssembly module (`_attention_simd.ts`):
 * `p = exp(s − m)` in float32 and each row's sum.
 *
 * @module
 */
import {
  addTo,
  body,
  type Code,
  f32Store,
  F32X4_ADD,
  F32X4_LT,
  F32X4_MAX,
  F32X4_MUL,
  F32X4_NEAREST,
  F32X4_SUB,
  f32x4Const,
  get,
  hsumF32,
  I32_ADD,
  I32_CLZ,
  I32_LT_S,
  I32_MUL,
  I32_SHL,
  I32_SUB,
  i32c,
  i32Load,
  I32X4_ADD,
  I32X4_SHL,
  I32X4_SPLAT,
  i32x4Const,
  LANE_INDICES,
  lanesBelow,
  load32Splat,
  type Madd,
  set,
  TRUNC_SAT_F32X4_S,
  v128Load,
  v128Store,
  V_AND,
  V_ANDNOT,
  V_BITSELECT,
  V_ZERO,
  whileLoop,
  wordAt,
} from "./_wasm_encoding.ts";

/** Below this, float32 exp is subnormal or 0: the kernel returns 0 (2^k stays normal). */
export const PEXP_LOW = -87;

/**
 * `ceil(log2 T)` for a tile of T ≥ 1 keys, the shift of the tile's probabilities: `pexp`
 * stores `p · 2^-shift` (and Σp unscaled, at most T), so a row's float32 Σ p·v over the tile
 * in `pv` is at most max |v| — no overflow for any finite V, even at float32's max — and `pv`
 * multiplies its sums back by `2^shift` in float64. Powers of two: exact unless p · 2^-shift
 * is subnormal, where it still holds p to 2^(shift − 149), against the row's largest weight
 * of 1 — far below float32's resolution of any output.
 */
export function probShift(T: number): number {
  return 32 - Math.clz32(T - 1);
}

/** {@link probShift} in wasm: the i32 `ceil(log2 T)` of the i32 local `T`. */
const shiftOf = (T: number): Code => [
  ...i32c(32),
  ...get(T),
  ...i32c(1),
  ...I32_SUB,
  ...I32_CLZ,
  ...I32_SUB,
];

/** An f32x4 of `2^(±shift)` for the tile size in i32 local `T` ({@link probShift}). */
export const shiftPow2 = (T: number, up: boolean): Code => [
  ...i32c(127),
  ...shiftOf(T),
  ...(up ? I32_ADD : I32_SUB),
  ...i32c(23),
  ...I32_SHL,
  ...I32X4_SPLAT,
];

/**
 * `p = exp(s − mx[r])` in place for the first `cnt[r]` scores of each row, `sum[r] = Σ p`, all
 * float32. exp: k = nearest(x·log2 e), r = x − k·ln2 (Cody–Waite with Cephes' split, ln2hi =
 * 0.693359375 so k·ln2hi is exact), the Taylor series to r^7 (truncation < 6e-9 relative on
 * |r| ≤ ln2/2, under float32's 6e-8), times 2^k built in the exponent bits; x < −87 (including
 * −∞) gives 0, NaN stays NaN. p is stored times 2^-shift ({@link probShift}), the sum not.
 * A row's last 1–3 scores go through one masked vector: the lanes past the count are stored
 * back unchanged and left out of the sum.
 */
export function pexp(madd: Madd): Code {
  // params s 0, R 1, T 2, cnt 3, mx 4, sum 5
  const [s, R, T, cnt, mx, sum] = [0, 1, 2, 3, 4, 5];
  const [r, j, n, ptr] = [8, 9, 10, 11];
  const [m, acc, old, mask] = [12, 13, 14, 15];
  // two independent chains (x, k, r, p each), so the two Horner chains overlap
  const chains = [[16, 17, 18, 19], [20, 21, 22, 23]];
  const [cLog2e, cLn2Hi, cLn2Lo, cLow, cBias, cLanes] = [24, 25, 26, 27, 28, 29];
  const coef = [...Array(8).keys()].map((i) => 30 + i); // 1/i!, i = 0..7
  const [cShift, cUnshift] = [38, 39];
  let fact = 1;
  const init = [
    ...shiftPow2(T, false),
    ...set(cShift),
    ...shiftPow2(T, true),
    ...set(cUnshift),
    ...f32x4Const(Math.LOG2E),
    ...set(cLog2e),
    ...f32x4Const(-0.693359375),
    ...set(cLn2Hi),
    ...f32x4Const(2.12194440e-4),
    ...set(cLn2Lo),
    ...f32x4Const(PEXP_LOW),
    ...set(cLow),
    ...i32x4Const(127),
    ...set(cBias),
    ...LANE_INDICES,
    ...set(cLanes),
    ...coef.flatMap((c, i) => {
      if (i > 0) fact *= i;
      return [...f32x4Const(1 / fact), ...set(c)];
    }),
  ];
  /** The steps of exp for one chain: x (set by the caller) → exp(x) in p. */
  const expSteps = ([x, kk, rr, p]: number[]): Code[] => [
    [...get(x), ...get(cLow), ...F32X4_MAX, ...set(rr)], // NaN stays NaN
    [...get(rr), ...get(cLog2e), ...F32X4_MUL, ...F32X4_NEAREST, ...set(kk)],
    [...get(kk), ...get(cLn2Hi), ...madd(rr), ...set(rr)],
    [...get(kk), ...get(cLn2Lo), ...madd(rr), ...set(rr)],
    [...get(coef[7]), ...set(p)],
    ...coef.slice(0, 7).reverse().map((c) => [...get(p), ...get(rr), ...madd(c), ...set(p)]),
    [
      ...get(p),
      ...get(kk),
      ...TRUNC_SAT_F32X4_S,
      ...get(cBias),
      ...I32X4_ADD,
      ...i32c(23),
      ...I32X4_SHL,
      ...F32X4_MUL,
      ...get(cShift),
      ...F32X4_MUL,
      ...get(x),
      ...get(cLow),
      ...F32X4_LT,
      ...V_ANDNOT,
      ...set(p),
    ],
  ];
  const interleave = (chs: number[][]): Code => {
    const steps = chs.map(expSteps);
    return steps[0].flatMap((_, i) => steps.flatMap((st) => st[i]));
  };
  const sAt: Code = [
    ...get(s),
    ...get(r),
    ...get(T),
    ...I32_MUL,
    ...get(j),
    ...I32_ADD,
    ...i32c(4),
    ...I32_MUL,
    ...I32_ADD,
    ...set(ptr),
  ];
  const [c0, c1] = chains;
  const loadX = (ch: number[], off: number): Code => [
    ...get(ptr),
    ...v128Load(off),
    ...get(m),
    ...F32X4_SUB,
    ...set(ch[0]),
  ];
  const storeP = (ch: number[], off: number): Code => [
    ...get(ptr),
    ...get(ch[3]),
    ...v128Store(off),
    ...get(acc),
    ...get(ch[3]),
    ...F32X4_ADD,
    ...set(acc),
  ];
  return body(4, 28, [
    ...init,
    ...i32c(0),
    ...set(r),
    ...whileLoop([...get(r), ...get(R), ...I32_LT_S], [
      ...wordAt(cnt, r),
      ...i32Load,
      ...set(n),
      ...wordAt(mx, r),
      ...load32Splat,
      ...set(m),
      ...V_ZERO,
      ...set(acc),
      ...i32c(0),
      ...set(j),
      // eight scores at a time, then four, then the last 1–3 masked
      ...whileLoop([...get(j), ...i32c(7), ...I32_ADD, ...get(n), ...I32_LT_S], [
        ...sAt,
        ...loadX(c0, 0),
        ...loadX(c1, 16),
        ...interleave(chains),
        ...storeP(c0, 0),
        ...storeP(c1, 16),
        ...addTo(j, i32c(8)),
      ]),
      ...whileLoop([...get(j), ...i32c(3), ...I32_ADD, ...get(n), ...I32_LT_S], [
        ...sAt,
        ...loadX(c0, 0),
        ...interleave([c0]),
        ...storeP(c0, 0),
        ...addTo(j, i32c(4)),
      ]),
      ...get(j),
      ...get(n),
      ...I32_LT_S,
      0x04,
      0x40,
      ...sAt,
      ...get(ptr),
      ...v128Load(0),
      ...set(old),
      ...get(old),
      ...get(m),
      ...F32X4_SUB,
      ...set(c0[0]),
      ...interleave([c0]),
      ...lanesBelow(cLanes, n, j),
      ...set(mask),
      ...get(ptr),
      ...get(c0[3]),
      ...get(old),
      ...get(mask),
      ...V_BITSELECT,
      ...v128Store(0),
      ...get(acc),
      ...get(c0[3]),
      ...get(mask),
      ...V_AND,
      ...F32X4_ADD,
      ...set(acc),
      0x0b,
      // the sum of the unscaled p (times 2^shift: exact, and the caller's l needs no shift)
      ...get(acc),
      ...get(cUnshift),
      ...F32X4_MUL,
      ...set(acc),
      ...wordAt(sum, r),
      ...hsumF32(acc),
      ...f32Store(0),
      ...addTo(r, i32c(1)),
    ]),
  ]);
}
