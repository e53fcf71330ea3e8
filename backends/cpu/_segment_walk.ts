/**
 * The walk over a schedule's segments that every CPU executor shares; the per-tile arithmetic
 * is a {@link TileKernel}'s (WebAssembly SIMD in `_simd_tile.ts`, plain JS in
 * `_scalar_tile.ts`).
 *
 * Each segment folds its tiles into one online-softmax state `(m, l, o)` per query row of the
 * unit (the GQA group's heads × the rows of the query block), a tile at a time: a kernel takes
 * all the live rows of a pass through one tile, so a kernel can read each K/V tile once per
 * unit. A unit done by one segment is normalised and written at once; a cut unit leaves its
 * state in a partial slot, merged later by `finishCuts`.
 *
 * @module
 */
import type { AttentionParams } from "../backend.ts";
import type { AttentionGeometry } from "../../schedule/geometry.ts";
import type { CpuArray } from "./_storage.ts";
import { PLAIN_ATTENTION } from "../../schedule/attention_plan.ts";
import { foldSink, writeRow } from "./_online_softmax.ts";
import { type KVRows, kvRows, type KVStorage } from "./_kv_rows.ts";

/**
 * Arrays the executor reads and writes; all plain typed arrays so Workers can share them.
 * With paged K/V, `k` and `v` are the first page buffers and `pages` has them all.
 */
export interface AttentionBuffers extends KVStorage {
  q: CpuArray;
  out: CpuArray;
  lse: Float32Array;
  /** Partial states, `numPartials · unitRows · (D + 2)`: per row `m, l, o[0..D)`. */
  partials: Float64Array;
  /** Sink logits `[Hq]`, when the run's variant has sinks (merged once per row). */
  sinks?: Float32Array;
  /** ALiBi slopes `[Hq]`, when the run's variant has ALiBi. */
  slopes?: Float32Array;
  /** Additive bias, with its element strides over (b, h, i, key position); 0 broadcasts. */
  bias?: { values: CpuArray; strides: readonly number[] };
}

/**
 * The attention parameters the executor uses; the variant fields default to textbook
 * attention over whole K/V (what the worker pool passes).
 */
export type WalkParams =
  & Pick<AttentionParams, "scale" | "causal" | "kvLens" | "schedule">
  & Partial<Pick<AttentionParams, "variant" | "keyOffset" | "positionLens" | "paged">>;

/** Stride of one row's state in the partial buffer. */
export function stateStride(g: AttentionGeometry): number {
  return g.D + 2;
}

/**
 * Row of out/lse of row `r` of unit `(b, kvHead, qBlock)` (head `r / rowsPerBlock` of the GQA
 * group, query `r % rowsPerBlock` of the block), or −1 past the last query of a short block.
 */
export function unitRow(
  g: AttentionGeometry,
  b: number,
  kvHead: number,
  qBlock: number,
  r: number,
): number {
  const { Hq, Sq, group, rowsPerBlock } = g;
  const h = kvHead * group + Math.floor(r / rowsPerBlock);
  const i = qBlock * rowsPerBlock + (r % rowsPerBlock);
  return i < Sq ? (b * Hq + h) * Sq + i : -1;
}

/**
 * The live rows of one pass over a segment, packed (`a = 0..R-1`), with their running `m` and
 * `l` in doubles; the kernel keeps their `o`.
 */
export interface PassRows {
  /** Row of out/lse. */
  row: Int32Array;
  /** Keys the row sees end here (causal masking, a window, the batch's length). */
  end: Int32Array;
  /** Keys the row sees start here (a window; the segment's first key without one). */
  start: Int32Array;
  /** Position of the row's query (`positionLens[b] − Sq + i`). */
  pos: Float64Array;
  /** Row of the unit (its partial slot's row). */
  slot: Int32Array;
  m: Float64Array;
  l: Float64Array;
}

/**
 * The per-tile arithmetic and where it keeps a pass's rows: the walk fills `q` and reads `o`,
 * both `rowStride` apart (a kernel may pad rows for its vectors).
 */
export interface TileKernel {
  /** Rows a pass may hold (the walk splits larger units into passes). */
  readonly rows: number;
  readonly rowStride: number;
  /** The pass's queries, times the softmax scale. */
  readonly q: Float32Array | Float64Array;
  /** The pass's unnormalised outputs. */
  readonly o: Float64Array;
  /**
   * Folds keys `[t0, t1)` of the (sequence, kv head) `kv` has selected into rows `[0, R)`; row
   * `a` takes only its keys in `[rows.start[a], rows.end[a])`, and none if the tile misses them.
   */
  tile(rows: PassRows, R: number, kv: KVRows, t0: number, t1: number): void;
}

/** Bytes of per-row scratch one pass over a unit may use. */
const PASS_SCRATCH = 32 << 20;

/**
 * Rows per pass: all of the unit's unless `bytesPerRow` each would pass PASS_SCRATCH (huge GQA
 * groups × query blocks × D); then K/V tiles are read once per pass. An even count keeps the
 * SIMD kernels' row pairing.
 */
export function rowsPerPass(unitRows: number, bytesPerRow: number): number {
  return Math.min(unitRows, Math.max(2, 2 * Math.floor(PASS_SCRATCH / bytesPerRow / 2)));
}

/**
 * Runs the segments of workers `[w0, w1)` of the schedule: writes uncut units to out/lse and
 * cut pieces to their partial slots. Workers touch disjoint memory, so any split of the
 * worker range over threads gives the same bits.
 */
export function walkSegments(
  kernel: TileKernel,
  buf: AttentionBuffers,
  g: AttentionGeometry,
  params: WalkParams,
  w0: number,
  w1: number,
): void {
  const { Hkv, Sq, N, D, unitRows } = g;
  const { q, out, lse, partials, sinks } = buf;
  const { scale, causal, kvLens, schedule } = params;
  const variant = params.variant ?? PLAIN_ATTENTION;
  const off = params.keyOffset ?? 0;
  const posLens = params.positionLens ?? kvLens;
  const { windowLeft, windowRight } = variant;
  const T = schedule.plan.tileSize;
  const { rows: Rc, rowStride: Dp, q: kq, o: ko } = kernel;
  const rows: PassRows = {
    row: new Int32Array(Rc),
    end: new Int32Array(Rc),
    start: new Int32Array(Rc),
    pos: new Float64Array(Rc),
    slot: new Int32Array(Rc),
    m: new Float64Array(Rc),
    l: new Float64Array(Rc),
  };
  const { m, l } = rows;
  const stride = stateStride(g);
  const kv = kvRows(buf, Hkv, N, D, params.paged);
  for (let w = w0; w < w1; w++) {
    for (const seg of schedule.workers[w]) {
      const unit = schedule.units[seg.unit];
      const { b, kvHead, qBlock } = unit;
      const len = kvLens[b];
      kv.select(b, kvHead);
      // Tiles start at the unit's first visible key (a window), not at key 0.
      const keyStart = unit.keyStart + seg.tileStart * T;
      const keyEnd = Math.min(unit.keyStart + seg.tileEnd * T, unit.keyStart + unit.keys, len);
      for (let r0 = 0; r0 < unitRows; r0 += Rc) {
        let R = 0;
        let segEnd = keyStart;
        for (let r = r0; r < Math.min(unitRows, r0 + Rc); r++) {
          const row = unitRow(g, b, kvHead, qBlock, r);
          if (row < 0) continue; // the last query block may be short
          const i = row % Sq;
          const qo = row * D;
          for (let d = 0; d < D; d++) kq[R * Dp + d] = q[qo + d] * scale;
          // Positions: query i at p, local key j at off + j (VARIANTS.md, "Positions").
          const p = posLens[b] - Sq + i;
          let end = keyEnd;
          if (causal) end = Math.min(end, p - off + 1);
          if (windowRight !== Infinity) end = Math.min(end, p + windowRight - off + 1);
          const start = windowLeft === Infinity
            ? keyStart
            : Math.max(keyStart, p - windowLeft - off);
          if (end > segEnd) segEnd = end;
          rows.row[R] = row;
          rows.end[R] = end;
          rows.start[R] = start;
          rows.pos[R] = p;
          rows.slot[R] = r;
          m[R] = -Infinity;
          l[R] = 0;
          R++;
        }
        ko.fill(0, 0, R * Dp);
        for (let t0 = keyStart; t0 < segEnd; t0 += T) {
          kernel.tile(rows, R, kv, t0, Math.min(t0 + T, segEnd));
        }
        for (let a = 0; a < R; a++) {
          const o = ko.subarray(a * Dp, a * Dp + D);
          if (seg.partial === -1) {
            if (sinks) {
              // The unit is whole here: its sink joins the state once, now.
              const st = { m: m[a], l: l[a], o };
              foldSink(st, sinks[Math.floor(rows.row[a] / Sq) % g.Hq]);
              writeRow(out, lse, rows.row[a], D, st.m, st.l, o);
              continue;
            }
            writeRow(out, lse, rows.row[a], D, m[a], l[a], o);
          } else {
            const po = (seg.partial * unitRows + rows.slot[a]) * stride;
            partials[po] = m[a];
            partials[po + 1] = l[a];
            for (let d = 0; d < D; d++) partials[po + 2 + d] = o[d];
          }
        }
      }
    }
  }
}
