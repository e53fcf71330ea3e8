/**
 * The inner loops of the CPU attention executor as a WebAssembly SIMD module whose bytes are
 * emitted here (no toolchain): K/V tile conversion to float64, the tile's scores for all rows
 * of a unit, and the P·V accumulation with the online-softmax rescale.
 *
 * Arithmetic is float64 (f64x2 lanes), so the results keep the plain-JS executor's accuracy;
 * the speed comes from reading each K/V tile once per unit (not once per query row), from
 * converting float16 by bit operations instead of `Float16Array` element reads, and from
 * independent accumulators. Wasm forbids fusing a multiply and an add, so every engine and
 * every thread gets the same bits.
 *
 * Layout (all offsets in bytes, row strides `Dp` elements, `Dp` a multiple of 16):
 * - `cvt16(src, dst, n)` / `cvt32(src, dst, n)`: `n` (a multiple of 4) float16 / float32
 *   values at `src` → float64 at `dst`.
 * - `scores(q, k, s, R, n, Dp, T)`: `s[r·T + j] = Σ_d q[r·Dp + d] · k[j·Dp + d]` for rows
 *   `r < R` and keys `j < n` (all float64).
 * - `pv(p, v, o, alpha, cnt, R, Dp, T)`: `o[r] = o[r] · alpha[r] + Σ_{j < cnt[r]} p[r·T + j]
 *   · v[j]` (`cnt` int32, the rest float64).
 *
 * @module
 */

/** The kernels of one instance and its memory. */
export interface SimdKernels {
  memory: WebAssembly.Memory;
  cvt16(src: number, dst: number, n: number): void;
  cvt32(src: number, dst: number, n: number): void;
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
const F64_ADD = [0xa0];
const v128Load = (offset = 0): Code => [...simd(0x00), 3, ...uleb(offset)];
const v128Store = (offset = 0): Code => [...simd(0x0b), 3, ...uleb(offset)];
const load16x4U = [...simd(0x04), 1, 0];
const load64Splat = [...simd(0x0a), 3, 0];
const i32Load = [0x28, 2, 0];
const f64Store = (offset = 0): Code => [0x39, 3, ...uleb(offset)];
const V_AND = simd(0x4e), V_OR = simd(0x50), V_BITSELECT = simd(0x52);
const I32X4_SHL = simd(0xab), I32X4_GT_S = simd(0x3b), F32X4_MUL = simd(0xe6);
const F64X2_ADD = simd(0xf0), F64X2_MUL = simd(0xf2), PROMOTE_LOW = simd(0x5f);
const extractF64 = (lane: number): Code => [...simd(0x21), lane];
const i32x4Const = (x: number): Code => {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setInt32(0, x, true);
  b.copyWithin(4, 0, 4);
  b.copyWithin(8, 0, 8);
  return [...simd(0x0c), ...b];
};
const V_ZERO = i32x4Const(0);
/** Shuffle bringing bytes 8..15 to 0..7 (the high two float32 lanes down). */
const HIGH_HALF = [...simd(0x0d), 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];

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

/** Shared tail of cvt16 / cvt32: float32x4 on the stack in local `f` → two f64x2 stores. */
function storeAsF64(dst: number, f: number): Code {
  return [
    ...get(dst),
    ...get(f),
    ...PROMOTE_LOW,
    ...v128Store(0),
    ...get(dst),
    ...get(f),
    ...get(f),
    ...HIGH_HALF,
    ...PROMOTE_LOW,
    ...v128Store(16),
  ];
}

function cvt16(): Code {
  // params src 0, dst 1, n 2; v128 locals: x, a, mag, f, then the constants (hoisted into
  // locals so the loop does not rematerialise them)
  const [src, dst, n, x, a, mag, f] = [0, 1, 2, 8, 9, 10, 11];
  const [cMag, cInf, cBias, cMax, cSign] = [12, 13, 14, 15, 16];
  const init = [
    ...i32x4Const(0x7fff),
    ...set(cMag),
    ...i32x4Const(0x7f800000),
    ...set(cInf),
    ...i32x4Const(0x77800000),
    ...set(cBias),
    ...i32x4Const(0x7bff),
    ...set(cMax),
    ...i32x4Const(0x8000),
    ...set(cSign),
  ];
  const step = [
    ...get(src),
    ...load16x4U,
    ...set(x),
    ...get(x),
    ...get(cMag),
    ...V_AND,
    ...set(a),
    ...get(a),
    ...i32c(13),
    ...I32X4_SHL,
    ...set(mag),
    // finite: the magnitude bits moved into float32 place, times 2^112 fixes the exponent
    // bias (and makes float16 subnormals exact float32 normals); inf/NaN: exponent all ones.
    ...get(mag),
    ...get(cInf),
    ...V_OR,
    ...get(mag),
    ...get(cBias),
    ...F32X4_MUL,
    ...get(a),
    ...get(cMax),
    ...I32X4_GT_S,
    ...V_BITSELECT,
    ...get(x),
    ...get(cSign),
    ...V_AND,
    ...i32c(16),
    ...I32X4_SHL,
    ...V_OR,
    ...set(f),
    ...storeAsF64(dst, f),
    ...addTo(src, i32c(8)),
    ...addTo(dst, i32c(32)),
    ...addTo(n, i32c(-4)),
  ];
  return body(0, 9, [...init, ...whileLoop([...i32c(0), ...get(n), ...I32_LT_S], step)]);
}

function cvt32(): Code {
  const [src, dst, n, f] = [0, 1, 2, 8];
  const step = [
    ...get(src),
    ...v128Load(0),
    ...set(f),
    ...storeAsF64(dst, f),
    ...addTo(src, i32c(16)),
    ...addTo(dst, i32c(32)),
    ...addTo(n, i32c(-4)),
  ];
  return body(0, 1, whileLoop([...i32c(0), ...get(n), ...I32_LT_S], step));
}

function scores(): Code {
  // params q 0, k 1, s 2, R 3, n 4, Dp 5, T 6; i32 locals from 8, v128 after
  const [q, k, s, R, n, Dp, T] = [0, 1, 2, 3, 4, 5, 6];
  const [j, r, d, rowB, k0, k1, k2, k3, qp, end] = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
  const [a0, a1, a2, a3, qv] = [18, 19, 20, 21, 22];
  const hsum = (a: number): Code => [
    ...get(a),
    ...extractF64(0),
    ...get(a),
    ...extractF64(1),
    ...F64_ADD,
  ];
  const sAddr = (off: Code): Code => [
    ...get(s),
    ...get(r),
    ...get(T),
    ...I32_MUL,
    ...get(j),
    ...I32_ADD,
    ...off,
    ...I32_ADD,
    ...i32c(8),
    ...I32_MUL,
    ...I32_ADD,
  ];
  const mac = (acc: number, kp: number): Code => [
    ...get(acc),
    ...get(qv),
    ...get(kp),
    ...get(d),
    ...I32_ADD,
    ...v128Load(0),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...set(acc),
  ];
  // Four keys at a time: four independent accumulators, q loaded once for all four.
  const fourKeys = [
    ...get(k),
    ...get(j),
    ...get(rowB),
    ...I32_MUL,
    ...I32_ADD,
    ...set(k0),
    ...get(k0),
    ...get(rowB),
    ...I32_ADD,
    ...set(k1),
    ...get(k1),
    ...get(rowB),
    ...I32_ADD,
    ...set(k2),
    ...get(k2),
    ...get(rowB),
    ...I32_ADD,
    ...set(k3),
    ...i32c(0),
    ...set(r),
    ...whileLoop([...get(r), ...get(R), ...I32_LT_S], [
      ...get(q),
      ...get(r),
      ...get(rowB),
      ...I32_MUL,
      ...I32_ADD,
      ...set(qp),
      ...V_ZERO,
      ...set(a0),
      ...V_ZERO,
      ...set(a1),
      ...V_ZERO,
      ...set(a2),
      ...V_ZERO,
      ...set(a3),
      ...i32c(0),
      ...set(d),
      ...whileLoop([...get(d), ...get(rowB), ...I32_LT_S], [
        ...get(qp),
        ...get(d),
        ...I32_ADD,
        ...v128Load(0),
        ...set(qv),
        ...mac(a0, k0),
        ...mac(a1, k1),
        ...mac(a2, k2),
        ...mac(a3, k3),
        ...addTo(d, i32c(16)),
      ]),
      ...sAddr(i32c(0)),
      ...hsum(a0),
      ...f64Store(0),
      ...sAddr(i32c(0)),
      ...hsum(a1),
      ...f64Store(8),
      ...sAddr(i32c(0)),
      ...hsum(a2),
      ...f64Store(16),
      ...sAddr(i32c(0)),
      ...hsum(a3),
      ...f64Store(24),
      ...addTo(r, i32c(1)),
    ]),
    ...addTo(j, i32c(4)),
  ];
  // The last n % 4 keys one at a time (same per-lane order, so the same bits per key).
  const oneKey = [
    ...get(k),
    ...get(j),
    ...get(rowB),
    ...I32_MUL,
    ...I32_ADD,
    ...set(k0),
    ...i32c(0),
    ...set(r),
    ...whileLoop([...get(r), ...get(R), ...I32_LT_S], [
      ...get(q),
      ...get(r),
      ...get(rowB),
      ...I32_MUL,
      ...I32_ADD,
      ...set(qp),
      ...V_ZERO,
      ...set(a0),
      ...i32c(0),
      ...set(d),
      ...whileLoop([...get(d), ...get(rowB), ...I32_LT_S], [
        ...get(qp),
        ...get(d),
        ...I32_ADD,
        ...v128Load(0),
        ...set(qv),
        ...mac(a0, k0),
        ...addTo(d, i32c(16)),
      ]),
      ...sAddr(i32c(0)),
      ...hsum(a0),
      ...f64Store(0),
      ...addTo(r, i32c(1)),
    ]),
    ...addTo(j, i32c(1)),
  ];
  return body(10, 5, [
    ...get(Dp),
    ...i32c(8),
    ...I32_MUL,
    ...set(rowB),
    ...get(n),
    ...i32c(-3),
    ...I32_ADD,
    ...set(end),
    ...i32c(0),
    ...set(j),
    ...whileLoop([...get(j), ...get(end), ...I32_LT_S], fourKeys),
    ...whileLoop([...get(j), ...get(n), ...I32_LT_S], oneKey),
  ]);
}

function pv(): Code {
  // params p 0, v 1, o 2, alpha 3, cnt 4, R 5, Dp 6, T 7
  const [p, v, o, alpha, cnt, R, Dp, T] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [r, db, j, c, op, vp, pp, rowB] = [8, 9, 10, 11, 12, 13, 14, 15];
  const [al, pj] = [16, 17];
  const acc = [18, 19, 20, 21, 22, 23, 24, 25];
  const loadAcc = acc.flatMap((a, i) => [
    ...get(op),
    ...v128Load(16 * i),
    ...get(al),
    ...F64X2_MUL,
    ...set(a),
  ]);
  const storeAcc = acc.flatMap((a, i) => [...get(op), ...get(a), ...v128Store(16 * i)]);
  const axpy = acc.flatMap((a, i) => [
    ...get(a),
    ...get(pj),
    ...get(vp),
    ...v128Load(16 * i),
    ...F64X2_MUL,
    ...F64X2_ADD,
    ...set(a),
  ]);
  return body(8, 10, [
    ...get(Dp),
    ...i32c(8),
    ...I32_MUL,
    ...set(rowB),
    ...i32c(0),
    ...set(r),
    ...whileLoop([...get(r), ...get(R), ...I32_LT_S], [
      ...get(cnt),
      ...get(r),
      ...i32c(4),
      ...I32_MUL,
      ...I32_ADD,
      ...i32Load,
      ...set(c),
      ...get(alpha),
      ...get(r),
      ...i32c(8),
      ...I32_MUL,
      ...I32_ADD,
      ...load64Splat,
      ...set(al),
      ...i32c(0),
      ...set(db),
      // 16 doubles of o per pass: eight independent accumulators over the tile's keys.
      ...whileLoop([...get(db), ...get(rowB), ...I32_LT_S], [
        ...get(o),
        ...get(r),
        ...get(rowB),
        ...I32_MUL,
        ...I32_ADD,
        ...get(db),
        ...I32_ADD,
        ...set(op),
        ...loadAcc,
        ...get(v),
        ...get(db),
        ...I32_ADD,
        ...set(vp),
        ...get(p),
        ...get(r),
        ...get(T),
        ...I32_MUL,
        ...i32c(8),
        ...I32_MUL,
        ...I32_ADD,
        ...set(pp),
        ...i32c(0),
        ...set(j),
        ...whileLoop([...get(j), ...get(c), ...I32_LT_S], [
          ...get(pp),
          ...load64Splat,
          ...set(pj),
          ...axpy,
          ...addTo(vp, get(rowB)),
          ...addTo(pp, i32c(8)),
          ...addTo(j, i32c(1)),
        ]),
        ...storeAcc,
        ...addTo(db, i32c(128)),
      ]),
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

/** The module's bytes. */
export function simdModuleBytes(): Uint8Array<ArrayBuffer> {
  const fns: [string, Code][] = [
    ["cvt16", cvt16()],
    ["cvt32", cvt32()],
    ["scores", scores()],
    ["pv", pv()],
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

/** This thread's instance, or null where WebAssembly SIMD is unavailable. */
export function simdKernels(): SimdKernels | null {
  if (cached !== undefined) return cached;
  try {
    const inst = new WebAssembly.Instance(new WebAssembly.Module(simdModuleBytes()));
    const e = inst.exports as unknown as Omit<SimdKernels, "memory"> & {
      mem: WebAssembly.Memory;
    };
    cached = {
      memory: e.mem,
      cvt16: e.cvt16,
      cvt32: e.cvt32,
      scores: e.scores,
      pv: e.pv,
    };
  } catch {
    cached = null;
  }
  return cached;
}
