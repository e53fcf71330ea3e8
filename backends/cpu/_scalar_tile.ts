/**
 * The segment walk's tile arithmetic in plain JS doubles, where WebAssembly SIMD is missing.
 * It agrees with the SIMD kernel to float32 rounding (tests/cpu_kernels_test.ts).
 *
 * @module
 */
import type { AttentionGeometry } from "../../schedule/geometry.ts";
import { maxOrNaN, rescaleRow } from "./_online_softmax.ts";
import {
  type AttentionBuffers,
  type PassRows,
  rowsPerPass,
  type TileKernel,
} from "./_segment_walk.ts";

/** The plain-JS tile kernel of one call (`T` keys a tile). */
export function scalarTileKernel(
  buf: AttentionBuffers,
  g: AttentionGeometry,
  T: number,
): TileKernel {
  const { k, v } = buf;
  const { N, D, unitRows } = g;
  const Rc = rowsPerPass(unitRows, D * 16);
  const qs = new Float64Array(Rc * D);
  const o = new Float64Array(Rc * D);
  const s = new Float64Array(Math.min(T, Math.max(1, N))); // a tile never spans more than N keys
  return {
    rows: Rc,
    rowStride: D,
    q: qs,
    o,
    tile(rows: PassRows, R: number, kBase: number, t0: number, t1: number): void {
      const { end: ends, m, l } = rows;
      for (let a = 0; a < R; a++) {
        const end = Math.min(t1, ends[a]);
        if (end <= t0) continue; // this row's keys ended before the tile
        const qa = a * D;
        let mt = -Infinity;
        for (let j = t0; j < end; j++) {
          const ko = kBase + j * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qs[qa + d] * k[ko + d];
          s[j - t0] = dot;
          mt = maxOrNaN(mt, dot);
        }
        const alpha = rescaleRow(m, l, a, mt);
        if (alpha < 0) continue; // every score −∞: the tile adds nothing
        const mNew = m[a];
        let la = l[a];
        for (let d = 0; d < D; d++) o[qa + d] *= alpha;
        for (let j = t0; j < end; j++) {
          const p = Math.exp(s[j - t0] - mNew);
          la += p;
          const vo = kBase + j * D;
          for (let d = 0; d < D; d++) o[qa + d] += p * v[vo + d];
        }
        l[a] = la;
      }
    },
  };
}
