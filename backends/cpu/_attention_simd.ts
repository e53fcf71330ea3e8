/**
 * The inner loops of the CPU attention executor as a WebAssembly SIMD module whose bytes are
 * emitted here (no toolchain): float16 → float32 tile conversion, the tile's scores for all
 * rows of a unit, exp, and the P·V accumulation with the online-softmax rescale.
 *
 * Arithmetic is float32 (f32x4 lanes), the GPU backend's contract ("f16 is storage, f32 is
 * arithmetic"): q (scaled), the K/V tiles (float16 decoded exactly, float32 copied), scores,
 * p = exp(s − m), a tile's row sums and its P·V sums are float32, so one instruction does four
 * multiply-adds and nothing is widened in the inner loops. Only the running `o` is float64:
 * each tile's float32 P·V (at most T terms a lane) is folded in with `o · α + tile` once per
 * tile, so the error does not grow with the key count (one float32 chain over 32k keys was
 * 7× the GPU backend's error in `deno task regress`). The speed comes from that, from reading
 * each K/V tile once per unit rather than once per query row (scores take rows by fours and
 * P·V by pairs, so each K/V vector feeds several rows), from converting float16 by bit
 * operations instead of `Float16Array` element reads, from an f32x4 exp, and from eight
 * independent accumulator chains. Multiply-adds are `f32x4.relaxed_madd` where the engine has relaxed SIMD (fused on
 * CPUs with FMA, else a multiply then an add); every thread of a process compiles the same
 * module on the same CPU, and V8's baseline and optimising tiers agree (checked), so the
 * in-thread and Worker executors give the same bits. Summation order depends only on the
 * geometry (rows are grouped only when they see the same keys; lane sums are
 * `(l0 + l1) + (l2 + l3)`), never on the thread split.
 *
 * Layout (all offsets in bytes, row strides `Dp` elements, `Dp` a multiple of 16; all float32
 * unless said otherwise):
 * - `cvt16(src, dst, n)`: `n` (a multiple of 8) float16 values at `src` → float32 at `dst`.
 * - `scores(q, k, s, R, n, Dp, T)`: `s[r·T + j] = Σ_d q[r·Dp + d] · k[j·Dp + d]` for rows
 *   `r < R` and keys `j < n`.
 * - `pv(p, v, o, alpha, cnt, R, Dp, T)`: `o[r] = o[r] · alpha[r] + Σ_{j < cnt[r]} p[r·T + j]
 *   · v[j]` (`cnt` int32; `o` and `alpha` float64: the tile's sum is float32 from zero, the
 *   rescale and the fold into the running `o` float64).
 * - `pexp(s, R, T, cnt, mx, sum)`: `s[r·T + j] = exp(s[r·T + j] − mx[r])` for `j < cnt[r]`,
 *   `sum[r] = Σ_j` of them; may read (and rewrites unchanged) up to 12 bytes past a row's
 *   count, so 16 bytes after `s` must be addressable.
 *
 * @module
 */

/** The kernels of one instance and its memory. */
export interface SimdKernels {
  memory: WebAssembly.Memory;
  cvt16(src: number, dst: number, n: number): void;
  scores(q: number, k: number, s: number, R: number, n: number, Dp: number, T: number): void;
  pv(
    p: number,
    v: number,
    o: number,
    alpha: number,
    cnt: number,
    R: number,
    Dp: number,
    T: number,
  ): void;
  pexp(s: number, R: number, T: number, cnt: number, mx: number, sum: number): void;
}

// --- encoding helpers --------------------------------------------------------------------

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

type Code = number[];
const get = (i: number): Code => [0x20, ...uleb(i)];
const set = (i: number): Code => [0x21, ...uleb(i)];
const i32c = (n: number): Code => [0x41, ...sleb(n)];
const simd = (op: number): Code => [0xfd, ...uleb(op)];
const I32_ADD = [0x6a], I32_SUB = [0x6b], I32_MUL = [0x6c], I32_LT_S = [0x48];
const I32_EQZ = [0x45], I32_EQ = [0x46], I32_AND = [0x71];
const v128Load = (offset = 0): Code => [...simd(0x00), 3, ...uleb(offset)];
const v128Store = (offset = 0): Code => [...simd(0x0b), 3, ...uleb(offset)];
const load16x4S = (offset = 0): Code => [...simd(0x03), 1, ...uleb(offset)];
const load32Splat = [...simd(0x09), 2, 0];
const load64Splat = [...simd(0x0a), 3, 0];
const F64X2_ADD = simd(0xf0), F64X2_MUL = simd(0xf2), PROMOTE_LOW = simd(0x5f);
/** `stack: a a` → lanes 2, 3 of a in lanes 0, 1 (i8x16.shuffle). */
const HIGH_HALF = [...simd(0x0d), 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];
const i32Load = [0x28, 2, 0];
const f32Store = (offset = 0): Code => [0x38, 2, ...uleb(offset)];
const V_AND = simd(0x4e), V_ANDNOT = simd(0x4f), V_OR = simd(0x50), V_BITSELECT = simd(0x52);
const I32X4_SHL = simd(0xab), I32X4_ADD = simd(0xae), I32X4_LT_S = simd(0x39);
const I32X4_SPLAT = simd(0x11);
const F32X4_ADD = simd(0xe4), F32X4_SUB = simd(0xe5), F32X4_MUL = simd(0xe6);
const F32X4_ABS = simd(0xe0), F32X4_MAX = simd(0xe9), F32X4_GE = simd(0x46), F32X4_LT = simd(0x43);
const F32X4_NEAREST = simd(0x6a), TRUNC_SAT_F32X4_S = simd(0xf8);
const I16X8_MAX_U = simd(0x99), I16X8_GT_U = simd(0x32), V_ANY_TRUE = simd(0x53);
const I32X4_EXTEND_LOW_I16X8_S = simd(0xa7), I32X4_EXTEND_HIGH_I16X8_S = simd(0xa8);
/** `stack: a` → `a · local` as float32x4. */
const F32X4_MUL_BY = (local: number): Code => [...get(local), ...F32X4_MUL];
const RELAXED_MADD = simd(0x105); // f32x4.relaxed_madd
/** `stack: a b` → `a · b + acc` (pushes acc itself). */
type Madd = (acc: number) => Code;
const extractF32 = (lane: number): Code => [...simd(0x1f), lane];
const F32_ADD = [0x92];
const i32x4Const = (x: number): Code => {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setInt32(0, x, true);
  b.copyWithin(4, 0, 4);
  b.copyWithin(8, 0, 8);
  return [...simd(0x0c), ...b];
};
const V_ZERO = i32x4Const(0);
const f32x4Const = (x: number): Code => {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < 4; i++) dv.setFloat32(4 * i, x, true);
  return [...simd(0x0c), ...b];
};

/** `while (cond) body` as block/loop with the test at both ends. */
function whileLoop(cond: Code, body: Code): Code {
  return [
    0x02,
    0x40,
    ...cond,
    ...I32_EQZ,
    0x0d,
    0x00,
    0x03,
    0x40,
    ...body,
    ...cond,
    0x0d,
    0x00,
    0x0b,
    0x0b,
  ];
}

const addTo = (local: number, amount: Code): Code => [
  ...get(local),
  ...amount,
  ...I32_ADD,
  ...set(local),
];

/** One function body: locals by type (i32, v128) after the params. */
function body(i32s: number, v128s: number, code: Code): Code {
  const decl = [2, ...uleb(i32s), 0x7f, ...uleb(v128s), 0x7b];
  const b = [...decl, ...code, 0x0b];
  return [...uleb(b.length), ...b];
}

// --- kernels -----------------------------------------------------------------------------
// Every function has 8 i32 params (unused ones ignored): one type for all.

function cvt16(): Code {
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

/**
 * `base + scale(r + dr)`: the address of row `r + dr`; `scale` is the code that turns a row
 * index into bytes.
 */
const rowAddr = (base: number, r: number, dr: number, scale: Code): Code => [
  ...get(base),
  ...get(r),
  ...i32c(dr),
  ...I32_ADD,
  ...scale,
  ...I32_ADD,
];

/** `stack: v` (f32x4) → `(v0 + v1) + (v2 + v3)` as f32: the fixed order of every lane sum. */
const hsumF32 = (v: number): Code => [
  ...get(v),
  ...extractF32(0),
  ...get(v),
  ...extractF32(1),
  ...F32_ADD,
  ...get(v),
  ...extractF32(2),
  ...get(v),
  ...extractF32(3),
  ...F32_ADD,
  ...F32_ADD,
];

function scores(madd: Madd): Code {
  // params q 0, k 1, s 2, R 3, n 4, Dp 5, T 6; i32 locals from 8, v128 after.
  // q and k rows are float32 with the same stride (Dp·4 bytes), s float32.
  const [q, k, s, R, n, Dp, T] = [0, 1, 2, 3, 4, 5, 6];
  const [j, r, dk, kRow, qp, end, qa, qp1] = [8, 9, 10, 11, 12, 13, 14, 15];
  const kp = [16, 17, 18, 19];
  const [qp2, qp3] = [20, 21];
  const [q0, q1, kv] = [22, 23, 24];
  const accA = [25, 26, 27, 28];
  const accB = [29, 30, 31, 32];
  const [q2, q3] = [33, 34];
  /** Address of s[(r + dr)·T + j]. */
  const sAddr = (dr: number): Code =>
    rowAddr(s, r, dr, [...get(T), ...I32_MUL, ...get(j), ...I32_ADD, ...i32c(4), ...I32_MUL]);
  const qRow = (dst: number, dr: number): Code => [
    ...rowAddr(q, r, dr, [...get(kRow), ...I32_MUL]),
    ...set(dst),
  ];
  const fma = (a: number, b: number, acc: number): Code => [
    ...get(a),
    ...get(b),
    ...madd(acc),
    ...set(acc),
  ];
  const kAt = (x: number, off: number): Code => [
    ...get(kp[x]),
    ...get(dk),
    ...I32_ADD,
    ...v128Load(off),
    ...set(kv),
  ];
  /**
   * One row × `keys` keys: two accumulators per key (d mod 8 < 4 and ≥ 4), so four keys give
   * eight independent chains.
   */
  const oneRow = (keys: number): Code => {
    const xs = [...Array(keys).keys()];
    return [
      ...qRow(qp, 0),
      ...xs.flatMap((x) => [...V_ZERO, ...set(accA[x]), ...V_ZERO, ...set(accB[x])]),
      ...i32c(0),
      ...set(dk),
      ...whileLoop([...get(dk), ...get(kRow), ...I32_LT_S], [
        ...get(qp),
        ...get(dk),
        ...I32_ADD,
        ...set(qa),
        ...get(qa),
        ...v128Load(0),
        ...set(q0),
        ...get(qa),
        ...v128Load(16),
        ...set(q1),
        ...xs.flatMap((x) => [...kAt(x, 0), ...fma(q0, kv, accA[x])]),
        ...xs.flatMap((x) => [...kAt(x, 16), ...fma(q1, kv, accB[x])]),
        ...addTo(dk, i32c(32)),
      ]),
      ...xs.flatMap((x) => [
        ...sAddr(0),
        ...get(accA[x]),
        ...get(accB[x]),
        ...F32X4_ADD,
        ...set(q0),
        ...hsumF32(q0),
        ...f32Store(4 * x),
      ]),
      ...addTo(r, i32c(1)),
    ];
  };
  /** Two rows × four keys (GQA): each k vector feeds both rows. */
  const twoRows: Code = [
    ...qRow(qp, 0),
    ...qRow(qp1, 1),
    ...[...accA, ...accB].flatMap((a) => [...V_ZERO, ...set(a)]),
    ...i32c(0),
    ...set(dk),
    ...whileLoop([...get(dk), ...get(kRow), ...I32_LT_S], [
      ...get(qp),
      ...get(dk),
      ...I32_ADD,
      ...v128Load(0),
      ...set(q0),
      ...get(qp1),
      ...get(dk),
      ...I32_ADD,
      ...v128Load(0),
      ...set(q1),
      ...[0, 1, 2, 3].flatMap((x) => [
        ...kAt(x, 0),
        ...fma(q0, kv, accA[x]),
        ...fma(q1, kv, accB[x]),
      ]),
      ...addTo(dk, i32c(16)),
    ]),
    ...[0, 1, 2, 3].flatMap((x) => [...sAddr(0), ...hsumF32(accA[x]), ...f32Store(4 * x)]),
    ...[0, 1, 2, 3].flatMap((x) => [...sAddr(1), ...hsumF32(accB[x]), ...f32Store(4 * x)]),
    ...addTo(r, i32c(2)),
  ];
  /** Four rows × keys `x0, x1` (GQA groups of ≥ 4): each k vector feeds four rows. */
  const qs = [q0, q1, q2, q3];
  const qps = [qp, qp1, qp2, qp3];
  const fourRows = (x0: number, x1: number): Code => {
    // accumulators: row i, key x0 → c[i][0], key x1 → c[i][1]
    const c = [[accA[0], accA[1]], [accA[2], accA[3]], [accB[0], accB[1]], [accB[2], accB[3]]];
    return [
      ...[...accA, ...accB].flatMap((a) => [...V_ZERO, ...set(a)]),
      ...i32c(0),
      ...set(dk),
      ...whileLoop([...get(dk), ...get(kRow), ...I32_LT_S], [
        ...[0, 1, 2, 3].flatMap((i) => [
          ...get(qps[i]),
          ...get(dk),
          ...I32_ADD,
          ...v128Load(0),
          ...set(qs[i]),
        ]),
        ...[x0, x1].flatMap((x, xi) => [
          ...kAt(x, 0),
          ...[0, 1, 2, 3].flatMap((i) => fma(qs[i], kv, c[i][xi])),
        ]),
        ...addTo(dk, i32c(16)),
      ]),
      ...[0, 1, 2, 3].flatMap((i) =>
        [x0, x1].flatMap((x, xi) => [...sAddr(i), ...hsumF32(c[i][xi]), ...f32Store(4 * x)])
      ),
    ];
  };
  const quad: Code = [
    ...qRow(qp, 0),
    ...qRow(qp1, 1),
    ...qRow(qp2, 2),
    ...qRow(qp3, 3),
    ...fourRows(0, 1),
    ...fourRows(2, 3),
    ...addTo(r, i32c(4)),
  ];
  /** Rows × `keys` keys starting at j. */
  const block = (keys: number): Code => [
    ...get(k),
    ...get(j),
    ...get(kRow),
    ...I32_MUL,
    ...I32_ADD,
    ...set(kp[0]),
    ...kp.slice(1, keys).flatMap((p, x) => [...get(kp[x]), ...get(kRow), ...I32_ADD, ...set(p)]),
    ...i32c(0),
    ...set(r),
    ...(keys === 4
      ? [
        ...whileLoop([...get(r), ...i32c(3), ...I32_ADD, ...get(R), ...I32_LT_S], quad),
        ...whileLoop([...get(r), ...i32c(1), ...I32_ADD, ...get(R), ...I32_LT_S], twoRows),
      ]
      : []),
    ...whileLoop([...get(r), ...get(R), ...I32_LT_S], oneRow(keys)),
    ...addTo(j, i32c(keys)),
  ];
  return body(14, 13, [
    ...get(Dp),
    ...i32c(4),
    ...I32_MUL,
    ...set(kRow),
    ...get(n),
    ...i32c(-3),
    ...I32_ADD,
    ...set(end),
    ...i32c(0),
    ...set(j),
    ...whileLoop([...get(j), ...get(end), ...I32_LT_S], block(4)),
    ...whileLoop([...get(j), ...get(n), ...I32_LT_S], block(1)),
  ]);
}

function pv(madd: Madd): Code {
  // params p 0, v 1, o 2, alpha 3, cnt 4, R 5, Dp 6, T 7; p, v float32, o, alpha float64, cnt
  // int32. A tile's sums start from zero in float32 and are folded into o in float64.
  const [p, v, o, alpha, cnt, R, Dp, T] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [r, db, j, c, op, vp, pp, vRow, op1, pp1] = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
  const [al, pj, al1, pj1, vv] = [18, 19, 20, 21, 22];
  const acc = [23, 24, 25, 26, 27, 28, 29, 30];
  const fma = (a: number, b: number, x: number): Code => [
    ...get(a),
    ...get(b),
    ...madd(x),
    ...set(x),
  ];
  /** dst := &o[(r + dr)·Dp + db/4] (db counts bytes of v; o is float64). */
  const oAddr = (dst: number, dr: number): Code => [
    ...rowAddr(o, r, dr, [
      ...get(vRow),
      ...I32_MUL,
      ...get(db),
      ...I32_ADD,
      ...i32c(2),
      ...I32_MUL,
    ]),
    ...set(dst),
  ];
  /** o[4i..4i+4) at `at` := o · alpha + the tile's float32 sums `a`, in float64. */
  const fold = (at: number, alv: number, a: number, i: number): Code =>
    [0, 1].flatMap((half) => [
      ...get(at),
      ...get(at),
      ...v128Load(32 * i + 16 * half),
      ...get(alv),
      ...F64X2_MUL,
      ...get(a),
      ...(half ? [...get(a), ...HIGH_HALF] : []),
      ...PROMOTE_LOW,
      ...F64X2_ADD,
      ...v128Store(32 * i + 16 * half),
    ]);
  const pAddr = (dst: number, dr: number): Code => [
    ...rowAddr(p, r, dr, [...get(T), ...I32_MUL, ...i32c(4), ...I32_MUL]),
    ...set(dst),
  ];
  const alphaOf = (dst: number, dr: number): Code => [
    ...rowAddr(alpha, r, dr, [...i32c(8), ...I32_MUL]),
    ...load64Splat,
    ...set(dst),
  ];
  /** A row of a pass: its o address, p address and value, alpha, and accumulators. */
  interface PassRow {
    op: number;
    pp: number;
    pj: number;
    al: number;
    acc: number[];
  }
  /**
   * `rows[0].acc.length`·4 values of o (from byte db) of the given rows (the unit's rows r,
   * r + 1, …) over all keys: one chain per vector and row; each v vector feeds every row.
   */
  const pass = (rows: PassRow[]): Code => [
    ...rows.flatMap((x, dr) => oAddr(x.op, dr)),
    ...rows.flatMap((x) => x.acc.flatMap((a) => [...V_ZERO, ...set(a)])),
    ...get(v),
    ...get(db),
    ...I32_ADD,
    ...set(vp),
    ...rows.flatMap((x, dr) => pAddr(x.pp, dr)),
    ...i32c(0),
    ...set(j),
    ...whileLoop([...get(j), ...get(c), ...I32_LT_S], [
      ...rows.flatMap((x) => [...get(x.pp), ...load32Splat, ...set(x.pj)]),
      ...rows[0].acc.flatMap((_, i) => [
        ...get(vp),
        ...v128Load(16 * i),
        ...set(vv),
        ...rows.flatMap((x) => fma(x.pj, vv, x.acc[i])),
      ]),
      ...addTo(vp, get(vRow)),
      ...rows.flatMap((x) => addTo(x.pp, i32c(4))),
      ...addTo(j, i32c(1)),
    ]),
    ...rows.flatMap((x) => x.acc.flatMap((a, i) => fold(x.op, x.al, a, i))),
    ...addTo(db, i32c(16 * rows[0].acc.length)),
  ];
  const oneRowPass = (as: number[]): Code => pass([{ op, pp, pj, al, acc: as }]);
  // 32 values a pass (eight chains); a Dp that is an odd multiple of 16 ends with 16.
  const oneRow: Code = [
    ...alphaOf(al, 0),
    ...i32c(0),
    ...set(db),
    ...whileLoop([...get(db), ...i32c(127), ...I32_ADD, ...get(vRow), ...I32_LT_S], [
      ...oneRowPass(acc),
    ]),
    ...get(db),
    ...get(vRow),
    ...I32_LT_S,
    0x04,
    0x40,
    ...oneRowPass(acc.slice(0, 4)),
    0x0b,
    ...addTo(r, i32c(1)),
  ];
  /** Two rows with the same key count (GQA decode): each v vector feeds both. */
  const a0 = acc.slice(0, 4), a1 = acc.slice(4);
  const twoRows: Code = [
    ...alphaOf(al, 0),
    ...alphaOf(al1, 1),
    ...i32c(0),
    ...set(db),
    ...whileLoop([...get(db), ...get(vRow), ...I32_LT_S], [
      ...pass([{ op, pp, pj, al, acc: a0 }, { op: op1, pp: pp1, pj: pj1, al: al1, acc: a1 }]),
    ]),
    ...addTo(r, i32c(2)),
  ];
  const cntOf = (
    dr: number,
  ): Code => [...rowAddr(cnt, r, dr, [...i32c(4), ...I32_MUL]), ...i32Load];
  return body(10, 13, [
    ...get(Dp),
    ...i32c(4),
    ...I32_MUL,
    ...set(vRow),
    ...i32c(0),
    ...set(r),
    ...whileLoop([...get(r), ...get(R), ...I32_LT_S], [
      ...cntOf(0),
      ...set(c),
      // pair rows when both exist and see the same keys, else one row
      ...get(r),
      ...i32c(1),
      ...I32_ADD,
      ...get(R),
      ...I32_LT_S,
      ...cntOf(1),
      ...get(c),
      ...I32_EQ,
      ...I32_AND,
      0x04,
      0x40,
      ...twoRows,
      0x05,
      ...oneRow,
      0x0b,
    ]),
  ]);
}

/** Below this, float32 exp is subnormal or 0: the kernel returns 0 (2^k stays normal). */
export const PEXP_LOW = -87;

/**
 * `p = exp(s − mx[r])` in place for the first `cnt[r]` scores of each row, `sum[r] = Σ p`, all
 * float32. exp: k = nearest(x·log2 e), r = x − k·ln2 (Cody–Waite with Cephes' split, ln2hi =
 * 0.693359375 so k·ln2hi is exact), the Taylor series to r^7 (truncation < 6e-9 relative on
 * |r| ≤ ln2/2, under float32's 6e-8), times 2^k built in the exponent bits; x < −87 (including
 * −∞) gives 0, NaN stays NaN. A row's last 1–3 scores go through one masked vector: the lanes
 * past the count are stored back unchanged and left out of the sum.
 */
function pexp(madd: Madd): Code {
  // params s 0, R 1, T 2, cnt 3, mx 4, sum 5
  const [s, R, T, cnt, mx, sum] = [0, 1, 2, 3, 4, 5];
  const [r, j, n, ptr] = [8, 9, 10, 11];
  const [m, acc, old, mask] = [12, 13, 14, 15];
  // two independent chains (x, k, r, p each), so the two Horner chains overlap
  const chains = [[16, 17, 18, 19], [20, 21, 22, 23]];
  const [cLog2e, cLn2Hi, cLn2Lo, cLow, cBias, cLanes] = [24, 25, 26, 27, 28, 29];
  const coef = [...Array(8).keys()].map((i) => 30 + i); // 1/i!, i = 0..7
  let fact = 1;
  const init = [
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
    ...simd(0x0c),
    ...new Uint8Array(new Int32Array([0, 1, 2, 3]).buffer),
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
  return body(4, 26, [
    ...init,
    ...i32c(0),
    ...set(r),
    ...whileLoop([...get(r), ...get(R), ...I32_LT_S], [
      ...get(cnt),
      ...get(r),
      ...i32c(4),
      ...I32_MUL,
      ...I32_ADD,
      ...i32Load,
      ...set(n),
      ...get(mx),
      ...get(r),
      ...i32c(4),
      ...I32_MUL,
      ...I32_ADD,
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
      ...get(cLanes),
      ...get(n),
      ...get(j),
      ...I32_SUB,
      ...I32X4_SPLAT,
      ...I32X4_LT_S,
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
      ...get(sum),
      ...get(r),
      ...i32c(4),
      ...I32_MUL,
      ...I32_ADD,
      ...hsumF32(acc),
      ...f32Store(0),
      ...addTo(r, i32c(1)),
    ]),
  ]);
}

function section(id: number, content: Code): Code {
  return [id, ...uleb(content.length), ...content];
}

function name(s: string): Code {
  const b = new TextEncoder().encode(s);
  return [...uleb(b.length), ...b];
}

/**
 * The module's bytes. `fma`: multiply-adds as `f64x2.relaxed_madd` (one rounding; fused where
 * the CPU has FMA), else `f64x2.mul` then `f64x2.add`.
 */
export function simdModuleBytes(fma: boolean): Uint8Array<ArrayBuffer> {
  const madd: Madd = fma
    ? (acc) => [...get(acc), ...RELAXED_MADD]
    : (acc) => [...F32X4_MUL, ...get(acc), ...F32X4_ADD];
  const fns: [string, Code][] = [
    ["cvt16", cvt16()],
    ["scores", scores(madd)],
    ["pv", pv(madd)],
    ["pexp", pexp(madd)],
  ];
  const type = [1, 0x60, 8, ...Array(8).fill(0x7f), 0];
  const funcs = [fns.length, ...fns.map(() => 0)];
  const memory = [1, 0x00, 1];
  const exports = [
    ...uleb(fns.length + 1),
    ...name("mem"),
    0x02,
    0,
    ...fns.flatMap(([n], i) => [...name(n), 0x00, i]),
  ];
  const code = [...uleb(fns.length), ...fns.flatMap(([, c]) => c)];
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    1,
    0,
    0,
    0,
    ...section(1, type),
    ...section(3, funcs),
    ...section(5, memory),
    ...section(7, exports),
    ...section(10, code),
  ]);
}

let cached: SimdKernels | null | undefined;
let disabled = false;

/**
 * A fresh instance of one variant (tests run both): `fma` uses `f64x2.relaxed_madd`. Throws
 * where the engine lacks WebAssembly SIMD (or relaxed SIMD, for `fma`).
 */
export function instantiateSimdKernels(fma: boolean): SimdKernels {
  const inst = new WebAssembly.Instance(new WebAssembly.Module(simdModuleBytes(fma)));
  const e = inst.exports as unknown as Omit<SimdKernels, "memory"> & {
    mem: WebAssembly.Memory;
  };
  return { memory: e.mem, cvt16: e.cvt16, scores: e.scores, pv: e.pv, pexp: e.pexp };
}

/**
 * This thread's instance (relaxed-SIMD multiply-adds where the engine has them, plain SIMD
 * otherwise), or null where WebAssembly SIMD is unavailable. Every thread of one process
 * makes the same choice, so the in-thread and Worker executors agree bit for bit.
 */
export function simdKernels(): SimdKernels | null {
  if (disabled) return null;
  if (cached !== undefined) return cached;
  for (const fma of [true, false]) {
    try {
      return cached = instantiateSimdKernels(fma);
    } catch {
      // try the next variant
    }
  }
  return cached = null;
}

/**
 * Tests only: `true` makes this thread's executor take the plain-JS path (as where
 * WebAssembly is missing). Workers are not affected.
 */
export function disableSimdKernelsForTesting(off: boolean): void {
  disabled = off;
}
