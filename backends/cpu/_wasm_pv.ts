/**
 * The `pv` function of the CPU attention's WebAssembly module (`_attention_simd.ts`): a
 * tile's P·V in float32, folded into the running float64 `o` with the online-softmax rescale.
 *
 * @module
 */
import {
  addTo,
  bodyWith,
  type Code,
  F64X2_ADD,
  F64X2_MUL,
  get,
  HIGH_HALF,
  I32_ADD,
  I32_AND,
  I32_EQ,
  I32_LT_S,
  I32_MUL,
  i32c,
  i32Load,
  load32SplatAt,
  load64Splat,
  type Madd,
  PROMOTE_LOW,
  rowAddr,
  set,
  v128Load,
  v128Store,
  V_ZERO,
  whileLoop,
} from "./_wasm_encoding.ts";
import { shiftPow2 } from "./_wasm_pexp.ts";

export function pv(madd: Madd): Code {
  // params p 0, v 1, o 2, alpha 3, cnt 4, R 5, Dp 6, T 7; p, v float32, o, alpha float64, cnt
  // int32. A tile's sums start from zero in float32 and are folded into o in float64; p is
  // pexp's, times 2^-shift (`probShift`), so the sums are multiplied by `gain` = 2^shift.
  const [p, v, o, alpha, cnt, R, Dp, T] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [r, db, j, c, op, vp, pp, vRow, op1, pp1] = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
  const [al, pj, al1, pj1, vv] = [18, 19, 20, 21, 22];
  const acc = [23, 24, 25, 26, 27, 28, 29, 30];
  const gain = 31;
  // i32 locals after the v128 ones: the second key's row and two rows' stride; then rows 2
  // and 3 of a four-row pass (o and p pointers, then their alpha and p as v128).
  const [vp2, vRow2] = [32, 33];
  const [op2, op3, pp2, pp3] = [34, 35, 36, 37];
  const [al2, al3, pj2, pj3] = [38, 39, 40, 41];
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
  /** o[4i..4i+4) at `at` := o · alpha + the tile's float32 sums `a` · gain, in float64. */
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
      ...get(gain),
      ...F64X2_MUL,
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
  /** One key's terms: each row's p (at `pOff` from its pointer) times the v vectors at `at`. */
  const keyTerms = (rows: PassRow[], at: number, pOff: number): Code => [
    ...rows.flatMap((x) => [...get(x.pp), ...load32SplatAt(pOff), ...set(x.pj)]),
    ...rows[0].acc.flatMap((_, i) => [
      ...get(at),
      ...v128Load(16 * i),
      ...set(vv),
      ...rows.flatMap((x) => fma(x.pj, vv, x.acc[i])),
    ]),
  ];
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
    // Two keys a trip (the second's row at vp2, its p at offset 4), then an odd key: each
    // accumulator takes the keys in the same order as one a trip.
    ...get(vRow),
    ...get(vRow),
    ...I32_ADD,
    ...set(vRow2),
    ...whileLoop([...get(j), ...i32c(1), ...I32_ADD, ...get(c), ...I32_LT_S], [
      ...get(vp),
      ...get(vRow),
      ...I32_ADD,
      ...set(vp2),
      ...keyTerms(rows, vp, 0),
      ...keyTerms(rows, vp2, 4),
      ...addTo(vp, get(vRow2)),
      ...rows.flatMap((x) => addTo(x.pp, i32c(8))),
      ...addTo(j, i32c(2)),
    ]),
    ...get(j),
    ...get(c),
    ...I32_LT_S,
    0x04,
    0x40,
    ...keyTerms(rows, vp, 0),
    0x0b,
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
  /**
   * Four rows with the same key count (GQA-4 decode), two vectors each a pass: each v vector
   * is loaded once a key for all four rows (the two-row pass loads it twice).
   */
  const fourRows: Code = [
    ...alphaOf(al, 0),
    ...alphaOf(al1, 1),
    ...alphaOf(al2, 2),
    ...alphaOf(al3, 3),
    ...i32c(0),
    ...set(db),
    ...whileLoop([...get(db), ...get(vRow), ...I32_LT_S], [
      ...pass([
        { op, pp, pj, al, acc: acc.slice(0, 2) },
        { op: op1, pp: pp1, pj: pj1, al: al1, acc: acc.slice(2, 4) },
        { op: op2, pp: pp2, pj: pj2, al: al2, acc: acc.slice(4, 6) },
        { op: op3, pp: pp3, pj: pj3, al: al3, acc: acc.slice(6, 8) },
      ]),
    ]),
    ...addTo(r, i32c(4)),
  ];
  const cntOf = (
    dr: number,
  ): Code => [...rowAddr(cnt, r, dr, [...i32c(4), ...I32_MUL]), ...i32Load];
  /** Whether rows r + 1 … r + `more` exist and see row r's key count (`c`). */
  const sameCounts = (more: number): Code => [
    ...get(r),
    ...i32c(more),
    ...I32_ADD,
    ...get(R),
    ...I32_LT_S,
    ...[...Array(more).keys()].flatMap((i) => [...cntOf(i + 1), ...get(c), ...I32_EQ, ...I32_AND]),
  ];
  return bodyWith([[10, 0x7f], [14, 0x7b], [6, 0x7f], [4, 0x7b]], [
    ...shiftPow2(T, true),
    ...PROMOTE_LOW,
    ...set(gain),
    ...get(Dp),
    ...i32c(4),
    ...I32_MUL,
    ...set(vRow),
    ...i32c(0),
    ...set(r),
    ...whileLoop([...get(r), ...get(R), ...I32_LT_S], [
      ...cntOf(0),
      ...set(c),
      // four rows, else a pair, when they exist and see the same keys; else one row
      ...sameCounts(3),
      0x04,
      0x40,
      ...fourRows,
      0x05,
      ...sameCounts(1),
      0x04,
      0x40,
      ...twoRows,
      0x05,
      ...oneRow,
      0x0b,
      0x0b,
    ]),
  ]);
}
