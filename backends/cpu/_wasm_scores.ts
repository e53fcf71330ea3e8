/**
 * The `scores` function of the CPU attention's WebAssembly module (`_attention_simd.ts`):
 * `q · k` for every row of a unit and every key of a tile, in float32.
 *
 * @module
 */
import {
  addTo,
  bodyWith,
  type Code,
  f32Store,
  F32X4_ADD,
  get,
  hsumF32,
  I32_ADD,
  I32_LT_S,
  I32_MUL,
  i32c,
  type Madd,
  rowAddr,
  set,
  v128Load,
  V_ZERO,
  whileLoop,
} from "./_wasm_encoding.ts";

export function scores(madd: Madd): Code {
  // params q 0, k 1, s 2, R 3, n 4, Dp 5, T 6; i32 locals from 8, v128 after.
  // q and k rows are float32 with the same stride (Dp·4 bytes, Dp a multiple of 16), s float32.
  const [q, k, s, R, n, Dp, T] = [0, 1, 2, 3, 4, 5, 6];
  const [j, r, dk, kRow, qp, end, qa, qp1] = [8, 9, 10, 11, 12, 13, 14, 15];
  const kp = [16, 17, 18, 19];
  const [qp2, qp3] = [20, 21];
  const [q0, q1, kv] = [22, 23, 24];
  const accA = [25, 26, 27, 28];
  const accB = [29, 30, 31, 32];
  const [q2, q3] = [33, 34];
  // i32 locals declared after the v128 ones: row addresses of the unrolled loops.
  const qa4 = [35, 36, 37, 38];
  const ka2 = [39, 40];
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
      // Two steps of 32 bytes a trip (Dp is a multiple of 16): addresses once, loads at offsets.
      ...whileLoop([...get(dk), ...get(kRow), ...I32_LT_S], [
        ...get(qp),
        ...get(dk),
        ...I32_ADD,
        ...set(qa),
        ...xs.flatMap((x) => [...get(kp[x]), ...get(dk), ...I32_ADD, ...set(qa4[x])]),
        ...[0, 32].flatMap((off) => [
          ...get(qa),
          ...v128Load(off),
          ...set(q0),
          ...get(qa),
          ...v128Load(off + 16),
          ...set(q1),
          ...xs.flatMap((
            x,
          ) => [...get(qa4[x]), ...v128Load(off), ...set(kv), ...fma(q0, kv, accA[x])]),
          ...xs.flatMap((x) => [
            ...get(qa4[x]),
            ...v128Load(off + 16),
            ...set(kv),
            ...fma(q1, kv, accB[x]),
          ]),
        ]),
        ...addTo(dk, i32c(64)),
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
    // Four vectors a trip (Dp is a multiple of 16): the row addresses once, loads at offsets.
    const steps = [0, 1, 2, 3];
    return [
      ...[...accA, ...accB].flatMap((a) => [...V_ZERO, ...set(a)]),
      ...i32c(0),
      ...set(dk),
      ...whileLoop([...get(dk), ...get(kRow), ...I32_LT_S], [
        ...[0, 1, 2, 3].flatMap((i) => [...get(qps[i]), ...get(dk), ...I32_ADD, ...set(qa4[i])]),
        ...[x0, x1].flatMap((x, xi) => [...get(kp[x]), ...get(dk), ...I32_ADD, ...set(ka2[xi])]),
        ...steps.flatMap((st) => [
          ...[0, 1, 2, 3].flatMap((i) => [...get(qa4[i]), ...v128Load(16 * st), ...set(qs[i])]),
          ...[x0, x1].flatMap((_, xi) => [
            ...get(ka2[xi]),
            ...v128Load(16 * st),
            ...set(kv),
            ...[0, 1, 2, 3].flatMap((i) => fma(qs[i], kv, c[i][xi])),
          ]),
        ]),
        ...addTo(dk, i32c(64)),
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
  return bodyWith([[14, 0x7f], [13, 0x7b], [6, 0x7f]], [
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
