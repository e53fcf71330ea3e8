/**
 * The steps of the online softmax that every CPU attention path shares, in doubles: the
 * NaN-poisoning max, the rescale of a row's running `(m, l)` by a tile's max, the pairwise
 * merge of two states, and the final `o / l` with its lse. Keeping each step in one place
 * keeps the executors' arithmetic order identical, which the bit-reproducibility relies on.
 *
 * @module
 */
import type { CpuArray } from "./_storage.ts";

/** `max(mt, x)` where a NaN wins, so a NaN input poisons the row as in the reference. */
export function maxOrNaN(mt: number, x: number): number {
  return !(x <= mt) && !Number.isNaN(mt) ? x : mt;
}

/**
 * Takes a tile whose largest score is `mt` into row `a`'s running `(m, l)`: returns α, the
 * factor the row's `o` must be rescaled by, or −1 where every score so far is −∞ (the tile
 * adds nothing and the state is left as it is).
 */
export function rescaleRow(m: Float64Array, l: Float64Array, a: number, mt: number): number {
  const mOld = m[a];
  const mNew = mOld >= mt ? mOld : mt;
  if (mNew === -Infinity) return -1;
  const alpha = mOld === -Infinity ? 0 : Math.exp(mOld - mNew);
  l[a] *= alpha;
  m[a] = mNew;
  return alpha;
}

/** A row's running state: `o` unnormalised, `l` its weight, `m` the max it is relative to. */
export interface RowState {
  m: number;
  l: number;
  o: Float64Array;
}

/** A fresh state of `D` values: the merge identity. */
export function rowState(D: number): RowState {
  return { m: -Infinity, l: 0, o: new Float64Array(D) };
}

/** Resets `st` to the merge identity. */
export function clearState(st: RowState): void {
  st.m = -Infinity;
  st.l = 0;
  st.o.fill(0);
}

/**
 * Folds the state `(mB, lB, src[off..off+D))` into `st` (α := 0 for an identity, so no NaN
 * from −∞ − −∞).
 */
export function foldState(
  st: RowState,
  mB: number,
  lB: number,
  src: ArrayLike<number>,
  off: number,
): void {
  const { m, o } = st;
  const mNew = m >= mB ? m : mB;
  if (mNew === -Infinity) return; // both identities
  const alpha = m === -Infinity ? 0 : Math.exp(m - mNew);
  const beta = mB === -Infinity ? 0 : Math.exp(mB - mNew);
  st.l = alpha * st.l + beta * lB;
  for (let d = 0; d < o.length; d++) o[d] = alpha * o[d] + beta * src[off + d];
  st.m = mNew;
}

/**
 * Folds a sink logit `z` into `st`: the state `(m = z, l = 1, o = 0)` (VARIANTS.md), merged
 * exactly once per row, after every piece of its keys.
 */
export function foldSink(st: RowState, z: number): void {
  const { m, o } = st;
  const mNew = m >= z ? m : z; // a NaN m gives NaN α below, so NaN stays NaN
  const alpha = m === -Infinity ? 0 : Math.exp(m - mNew);
  st.l = alpha * st.l + Math.exp(z - mNew);
  for (let d = 0; d < o.length; d++) o[d] *= alpha;
  st.m = mNew;
}

/** Writes row `row` of out (`o / l`) and lse (`m + log l`); a row with `l = 0` is 0 and −∞. */
export function writeRow(
  out: CpuArray,
  lse: Float32Array,
  row: number,
  D: number,
  m: number,
  l: number,
  o: ArrayLike<number>,
): void {
  const oo = row * D;
  if (l === 0) {
    for (let d = 0; d < D; d++) out[oo + d] = 0;
    lse[row] = -Infinity;
    return;
  }
  const inv = 1 / l;
  for (let d = 0; d < D; d++) out[oo + d] = o[d] * inv;
  lse[row] = m + Math.log(l);
}
