/**
 * The inner loops of the CPU attention executor as a WebAssembly SIMD module whose bytes are
 * emitted here (no toolchain): float16 → float32 tile conversion, the tile's scores for all
 * rows of a unit, and the P·V accumulation with the online-softmax rescale.
 *
 * Arithmetic is float64 (f64x2 lanes; K/V tiles are kept as float32, which holds every float16
 * and float32 input exactly, and widened on load), so results keep the plain-JS executor's
 * accuracy. The speed comes from reading each K/V tile once per unit rather than once per query
 * row (scores take rows by fours and P·V by pairs, so each widened K/V pair feeds several rows),
 * from converting float16 by bit operations instead of `Float16Array` element reads, from an
 * f64x2 exp, and from eight independent accumulator chains. Multiply-adds are
 * `f64x2.relaxed_madd` where the engine has relaxed SIMD (fused on CPUs with FMA, else a
 * multiply then an add); every thread of a process compiles the same module on the same CPU,
 * and V8's baseline and optimising tiers agree (checked), so the in-thread and Worker executors
 * give the same bits. Summation order depends only on the geometry (rows are grouped only when
 * they see the same keys), never on the thread split.
 *
 * Layout (all offsets in bytes, row strides `Dp` elements, `Dp` a multiple of 16):
 * - `cvt16(src, dst, n)`: `n` (a multiple of 8) float16 values at `src` → float32 at `dst`.
 * - `scores(q, k, s, R, n, Dp, T)`: `s[r·T + j] = Σ_d q[r·Dp + d] · k[j·Dp + d]` for rows
 *   `r < R` and keys `j < n` (q and s float64, k float32).
 * - `pv(p, v, o, alpha, cnt, R, Dp, T)`: `o[r] = o[r] · alpha[r] + Σ_{j < cnt[r]} p[r·T + j]
 *   · v[j]` (`cnt` int32, v float32, the rest float64).
 * - `pexp(s, R, T, cnt, mx, sum)`: `s[r·T + j] = exp(s[r·T + j] − mx[r])` for `j < cnt[r]`,
 *   `sum[r] = Σ_j` of them (float64).
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
const I32_ADD = [0x6a], I32_MUL = [0x6c], I32_LT_S = [0x48], I32_EQZ = [0x45];
const I32_EQ = [0x46], I32_AND = [0x71];
const F64_ADD = [0xa0];
const v128Load = (offset = 0): Code => [...simd(0x00), 3, ...uleb(offset)];
const v128Store = (offset = 0): Code => [...simd(0x0b), 3, ...uleb(offset)];
const load16x4S = (offset = 0): Code => [...simd(0x03), 1, ...uleb(offset)];
const load64Splat = [...simd(0x0a), 3, 0];
const load64Zero = (offset = 0): Code => [...simd(0x5d), 3, ...uleb(offset)];
const i32Load = [0x28, 2, 0];
const f64Store = (offset = 0): Code => [0x39, 3, ...uleb(offset)];
const V_AND = simd(0x4e), V_OR = simd(0x50);
const I32X4_SHL = simd(0xab), F32X4_MUL = simd(0xe6), F32X4_ABS = simd(0xe0);
const F32X4_GE = simd(0x46);
const I16X8_MAX_U = simd(0x99), I16X8_GT_U = simd(0x32), V_ANY_TRUE = simd(0x53);
const I32X4_EXTEND_LOW_I16X8_S = simd(0xa7), I32X4_EXTEND_HIGH_I16X8_S = simd(0xa8);
/** `stack: a` → `a · local` as float32x4. */
const F32X4_MUL_BY = (local: number): Code => [...get(local), ...F32X4_MUL];
const F64X2_ADD = simd(0xf0), F64X2_MUL = simd(0xf2), PROMOTE_LOW = simd(0x5f);
const RELAXED_MADD = simd(0x107);
/** `stack: a b` → `a · b + acc` (pushes acc itself). */
type Madd = (acc: number) => Code;
const extractF64 = (lane: number): Code => [...simd(0x21), lane];
const i32x4Const = (x: number): Code => {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setInt32(0, x, true);
  b.copyWithin(4, 0, 4);
  b.copyWithin(8, 0, 8);
  return [...simd(0x0c), ...b];
};
const V_ZERO = i32x4Const(0);
const f64x2Const = (x: number): Code => {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setFloat64(0, x, true);
  dv.setFloat64(8, x, true);
  return [...simd(0x0c), ...b];
};
const i64x2Const = (x: number): Code => {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigInt64(0, BigInt(x), true);
  dv.setBigInt64(8, BigInt(x), true);
  return [...simd(0x0c), ...b];
};
const F64X2_SUB = simd(0xf1), F64X2_MAX = simd(0xf5), F64X2_NEAREST = simd(0x94);
const F64X2_LT = simd(0x49), V_ANDNOT = simd(0x4f), TRUNC_SAT_F64_ZERO = simd(0xfc);
const I64X2_EXTEND_LOW_S = simd(0xc7), I64X2_ADD = simd(0xce), I64X2_SHL = simd(0xcb);
const f64Const = (x: number): Code => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, x, true);
  return [0x44, ...b];
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

/** Two float32 at `addr + offset` as an f64x2 (exact). */
const loadPromote = (offset: number): Code => [...load64Zero(offset), ...PROMOTE_LOW];

function scores(madd: Madd): Code {
  // params q 0, k 1, s 2, R 3, n 4, Dp 5, T 6; i32 locals from 8, v128 after.
  // q rows are float64 (stride Dp·8 bytes), k rows float32 (stride Dp·4), s float64.
  const [q, k, s, R, n, Dp, T] = [0, 1, 2, 3, 4, 5, 6];
  const [j, r, dk, kRow, qp, end, qa, qp1] = [8, 9, 10, 11, 12, 13, 14, 15];
  const kp = [16, 17, 18, 19];
  const [qp2, qp3] = [20, 21];
  const [q0, q1, kv] = [22, 23, 24];
  const accA = [25, 26, 27, 28];
  const accB = [29, 30, 31, 32];
  const [q2, q3] = [33, 34];
  const lanes = (a: number): Code => [
    ...get(a),
    ...extractF64(0),
    ...get(a),
    ...extractF64(1),
    ...F64_ADD,
  ];
  const hsum = (x: number): Code => [
    ...get(accA[x]),
    ...get(accB[x]),
    ...F64X2_ADD,
    ...set(q0),
    ...lanes(q0),
  ];
  /** Address of s[(r + dr)·T + j]. */
  const sAddr = (dr: number): Code => [
    ...get(s),
    ...get(r),
    ...i32c(dr),
    ...I32_ADD,
    ...get(T),
    ...I32_MUL,
    ...get(j),
    ...I32_ADD,
    ...i32c(8),
    ...I32_MUL,
    ...I32_ADD,
  ];
  const qRow = (dst: number, dr: number): Code => [
    ...get(q),
    ...get(r),
    ...i32c(dr),
    ...I32_ADD,
    ...get(kRow),
    ...i32c(2),
    ...I32_MUL,
    ...I32_MUL,
    ...I32_ADD,
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
    ...loadPromote(off),
    ...set(kv),
  ];
  /**
   * One row × `keys` keys: two accumulators per key (even / odd pairs of d), so four keys
   * give eight independent chains.
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
        ...xs.flatMap((x) => [...kAt(x, 8), ...fma(q1, kv, accB[x])]),
        ...addTo(dk, i32c(16)),
      ]),
      ...xs.flatMap((x) => [...sAddr(0), ...hsum(x), ...f64Store(8 * x)]),
      ...addTo(r, i32c(1)),
    ];
  };
  /** Two rows × four keys (GQA): each converted k pair feeds both rows. */
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
      ...get(dk),
      ...I32_ADD,
      ...v128Load(0),
      ...set(q0),
      ...get(qp1),
      ...get(dk),
      ...I32_ADD,
      ...get(dk),
      ...I32_ADD,
      ...v128Load(0),
      ...set(q1),
      ...[0, 1, 2, 3].flatMap((x) => [
        ...kAt(x, 0),
        ...fma(q0, kv, accA[x]),
        ...fma(q1, kv, accB[x]),
      ]),
      ...addTo(dk, i32c(8)),
    ]),
    ...[0, 1, 2, 3].flatMap((x) => [...sAddr(0), ...lanes(accA[x]), ...f64Store(8 * x)]),
    ...[0, 1, 2, 3].flatMap((x) => [...sAddr(1), ...lanes(accB[x]), ...f64Store(8 * x)]),
    ...addTo(r, i32c(2)),
  ];
  /**
   * Four rows × keys `x0, x1` (GQA groups of ≥ 4): each widened k pair feeds four rows, so the
   * widening (which competes with the multiply-adds for a port) is amortised twice as far.
   */
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
          ...get(dk),
          ...I32_ADD,
          ...v128Load(0),
          ...set(qs[i]),
        ]),
        ...[x0, x1].flatMap((x, xi) => [
          ...kAt(x, 0),
          ...[0, 1, 2, 3].flatMap((i) => fma(qs[i], kv, c[i][xi])),
        ]),
        ...addTo(dk, i32c(8)),
      ]),
      ...[0, 1, 2, 3].flatMap((i) =>
        [x0, x1].flatMap((x, xi) => [...sAddr(i), ...lanes(c[i][xi]), ...f64Store(8 * x)])
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
  // params p 0, v 1, o 2, alpha 3, cnt 4, R 5, Dp 6, T 7; p, o, alpha float64, v float32.
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
  /** op := &o[(r + dr)·Dp + db/4·…] (db counts bytes of v, o is float64). */
  const oAddr = (dst: number, dr: number): Code => [
    ...get(o),
    ...get(r),
    ...i32c(dr),
    ...I32_ADD,
    ...get(vRow),
    ...I32_MUL,
    ...get(db),
    ...I32_ADD,
    ...i32c(2),
    ...I32_MUL,
    ...I32_ADD,
    ...set(dst),
  ];
  const pAddr = (dst: number, dr: number): Code => [
    ...get(p),
    ...get(r),
    ...i32c(dr),
    ...I32_ADD,
    ...get(T),
    ...I32_MUL,
    ...i32c(8),
    ...I32_MUL,
    ...I32_ADD,
    ...set(dst),
  ];
  const alphaOf = (dst: number, dr: number): Code => [
    ...get(alpha),
    ...get(r),
    ...i32c(dr),
    ...I32_ADD,
    ...i32c(8),
    ...I32_MUL,
    ...I32_ADD,
    ...load64Splat,
    ...set(dst),
  ];
  /** One row, 16 values of o per pass: eight independent accumulators over the keys. */
  const oneRow: Code = [
    ...alphaOf(al, 0),
    ...i32c(0),
    ...set(db),
    ...whileLoop([...get(db), ...get(vRow), ...I32_LT_S], [
      ...oAddr(op, 0),
      ...acc.flatMap((a, i) => [
        ...get(op),
        ...v128Load(16 * i),
        ...get(al),
        ...F64X2_MUL,
        ...set(a),
      ]),
      ...get(v),
      ...get(db),
      ...I32_ADD,
      ...set(vp),
      ...pAddr(pp, 0),
      ...i32c(0),
      ...set(j),
      ...whileLoop([...get(j), ...get(c), ...I32_LT_S], [
        ...get(pp),
        ...load64Splat,
        ...set(pj),
        ...acc.flatMap((a, i) => [
          ...get(vp),
          ...loadPromote(8 * i),
          ...set(vv),
          ...fma(pj, vv, a),
        ]),
        ...addTo(vp, get(vRow)),
        ...addTo(pp, i32c(8)),
        ...addTo(j, i32c(1)),
      ]),
      ...acc.flatMap((a, i) => [...get(op), ...get(a), ...v128Store(16 * i)]),
      ...addTo(db, i32c(64)),
    ]),
    ...addTo(r, i32c(1)),
  ];
  /** Two rows with the same key count (GQA decode): each converted v pair feeds both. */
  const a0 = acc.slice(0, 4), a1 = acc.slice(4);
  const twoRows: Code = [
    ...alphaOf(al, 0),
    ...alphaOf(al1, 1),
    ...i32c(0),
    ...set(db),
    ...whileLoop([...get(db), ...get(vRow), ...I32_LT_S], [
      ...oAddr(op, 0),
      ...oAddr(op1, 1),
      ...a0.flatMap((a, i) => [
        ...get(op),
        ...v128Load(16 * i),
        ...get(al),
        ...F64X2_MUL,
        ...set(a),
      ]),
      ...a1.flatMap((a, i) => [
        ...get(op1),
        ...v128Load(16 * i),
        ...get(al1),
        ...F64X2_MUL,
        ...set(a),
      ]),
      ...get(v),
      ...get(db),
      ...I32_ADD,
      ...set(vp),
      ...pAddr(pp, 0),
      ...pAddr(pp1, 1),
      ...i32c(0),
      ...set(j),
      ...whileLoop([...get(j), ...get(c), ...I32_LT_S], [
        ...get(pp),
        ...load64Splat,
        ...set(pj),
        ...get(pp1),
        ...load64Splat,
        ...set(pj1),
        ...[0, 1, 2, 3].flatMap((i) => [
          ...get(vp),
          ...loadPromote(8 * i),
          ...set(vv),
          ...fma(pj, vv, a0[i]),
          ...fma(pj1, vv, a1[i]),
        ]),
        ...addTo(vp, get(vRow)),
        ...addTo(pp, i32c(8)),
        ...addTo(pp1, i32c(8)),
        ...addTo(j, i32c(1)),
      ]),
      ...a0.flatMap((a, i) => [...get(op), ...get(a), ...v128Store(16 * i)]),
      ...a1.flatMap((a, i) => [...get(op1), ...get(a), ...v128Store(16 * i)]),
      ...addTo(db, i32c(32)),
    ]),
    ...addTo(r, i32c(2)),
  ];
  const cntOf = (dr: number): Code => [
    ...get(cnt),
    ...get(r),
    ...i32c(dr),
    ...I32_ADD,
    ...i32c(4),
    ...I32_MUL,
    ...I32_ADD,
    ...i32Load,
  ];
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

/**
 * `p = exp(s − mx[r])` in place for the first `cnt[r]` scores of each row, `sum[r] = Σ p`.
 * exp: k = nearest(x·log2 e), r = x − k·ln2 (Cody–Waite, ln2 split so k·ln2hi is exact), the
 * Taylor series to r^13 (truncation < 1e-17 relative on |r| ≤ ln2/2), times 2^k built in the
 * exponent bits; x < −708 (including −∞) gives 0, NaN stays NaN.
 */
function pexp(madd: Madd): Code {
  // params s 0, R 1, T 2, cnt 3, mx 4, sum 5
  const [s, R, T, cnt, mx, sum] = [0, 1, 2, 3, 4, 5];
  const [r, j, n, ptr] = [8, 9, 10, 11];
  const [m, acc] = [12, 13];
  // two independent chains (x, k, r, p each), so the two Horner chains overlap
  const chains = [[14, 15, 16, 17], [18, 19, 20, 21]];
  const [cLog2e, cLn2Hi, cLn2Lo, cLow, cBias] = [22, 23, 24, 25, 26];
  const coef = [...Array(14).keys()].map((i) => 27 + i); // 1/i!, i = 0..13
  let fact = 1;
  const init = [
    ...f64x2Const(Math.LOG2E),
    ...set(cLog2e),
    ...f64x2Const(-0.6931471803691238),
    ...set(cLn2Hi), // fdlibm ln2_hi (low 21 bits zero)
    ...f64x2Const(-1.9082149292705877e-10),
    ...set(cLn2Lo),
    ...f64x2Const(-708),
    ...set(cLow),
    ...i64x2Const(1023),
    ...set(cBias),
    ...coef.flatMap((c, i) => {
      if (i > 0) fact *= i;
      return [...f64x2Const(1 / fact), ...set(c)];
    }),
  ];
  /** The steps of exp for one chain: x (set by the caller) → exp(x) in p. */
  const expSteps = ([x, kk, rr, p]: number[]): Code[] => [
    [...get(x), ...get(cLow), ...F64X2_MAX, ...set(rr)], // NaN stays NaN
    [...get(rr), ...get(cLog2e), ...F64X2_MUL, ...F64X2_NEAREST, ...set(kk)],
    [...get(kk), ...get(cLn2Hi), ...madd(rr), ...set(rr)],
    [...get(kk), ...get(cLn2Lo), ...madd(rr), ...set(rr)],
    [...get(coef[13]), ...set(p)],
    ...coef.slice(0, 13).reverse().map((c) => [...get(p), ...get(rr), ...madd(c), ...set(p)]),
    [
      ...get(p),
      ...get(kk),
      ...TRUNC_SAT_F64_ZERO,
      ...I64X2_EXTEND_LOW_S,
      ...get(cBias),
      ...I64X2_ADD,
      ...i32c(52),
      ...I64X2_SHL,
      ...F64X2_MUL,
      ...get(x),
      ...get(cLow),
      ...F64X2_LT,
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
    ...i32c(8),
    ...I32_MUL,
    ...I32_ADD,
    ...set(ptr),
  ];
  const [c0, c1] = chains;
  const loadX = (ch: number[], off: number): Code => [
    ...get(ptr),
    ...v128Load(off),
    ...get(m),
    ...F64X2_SUB,
    ...set(ch[0]),
  ];
  const storeP = (ch: number[], off: number): Code => [
    ...get(ptr),
    ...get(ch[3]),
    ...v128Store(off),
    ...get(acc),
    ...get(ch[3]),
    ...F64X2_ADD,
    ...set(acc),
  ];
  return body(4, 41, [
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
      ...i32c(8),
      ...I32_MUL,
      ...I32_ADD,
      ...load64Splat,
      ...set(m),
      ...V_ZERO,
      ...set(acc),
      ...i32c(0),
      ...set(j),
      // four scores at a time, then two, then the odd last one
      ...whileLoop([...get(j), ...i32c(3), ...I32_ADD, ...get(n), ...I32_LT_S], [
        ...sAt,
        ...loadX(c0, 0),
        ...loadX(c1, 16),
        ...interleave(chains),
        ...storeP(c0, 0),
        ...storeP(c1, 16),
        ...addTo(j, i32c(4)),
      ]),
      ...whileLoop([...get(j), ...i32c(1), ...I32_ADD, ...get(n), ...I32_LT_S], [
        ...sAt,
        ...loadX(c0, 0),
        ...interleave([c0]),
        ...storeP(c0, 0),
        ...addTo(j, i32c(2)),
      ]),
      ...get(sum),
      ...get(r),
      ...i32c(8),
      ...I32_MUL,
      ...I32_ADD,
      ...get(acc),
      ...extractF64(0),
      ...get(acc),
      ...extractF64(1),
      ...F64_ADD,
      ...get(j),
      ...get(n),
      ...I32_LT_S,
      0x04,
      0x7c, // if (result f64)
      ...sAt,
      ...get(ptr),
      ...load64Splat,
      ...get(m),
      ...F64X2_SUB,
      ...set(c0[0]),
      ...interleave([c0]),
      ...get(ptr),
      ...get(c0[3]),
      ...extractF64(0),
      ...f64Store(0),
      ...get(c0[3]),
      ...extractF64(0),
      0x05,
      ...f64Const(0),
      0x0b,
      ...F64_ADD,
      ...f64Store(0),
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
    : (acc) => [...F64X2_MUL, ...get(acc), ...F64X2_ADD];
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
