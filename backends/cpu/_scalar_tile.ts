/**
 * The segment walk's tile arithmetic in plain JS doubles, where WebAssembly SIMD is missing.
 * It agrees with the SIMD kernel to float32 rounding (tests/cpu_kernels_test.ts).
 *
 * @module
 */
import type { AttentionGeometry } from "../../schedule/geometry.ts";
import { PLAIN_ATTENTION } from "../../schedule/attention_plan.ts";
import { maxOrNaN, rescaleRow } from "./_online_softmax.ts";
import {
  type AttentionBuffers,
  type PassRows,
  rowsPerPass,
  type TileKernel,
  type WalkParams,
} from "./_segment_walk.ts";
import { kvArrays, type KVRows } from "./_kv_rows.ts";
import type { CpuArray, CpuQuantArray } from "./_storage.ts";
import { dequantRows } from "./_kv_quant.ts";

/**
 * The score changes of a variant after `s = scale · q·k` (VARIANTS.md, in order: soft-cap,
 * ALiBi, bias), for row `row` at position `p` and key position `kp`; null for none.
 */
function scoreTransform(
  buf: AttentionBuffers,
  g: AttentionGeometry,
  params: WalkParams | undefined,
): ((s: number, row: number, p: number, kp: number) => number) | null {
  const variant = params?.variant ?? PLAIN_ATTENTION;
  const { slopes, bias } = buf;
  const c = variant.softcap;
  if (c === 0 && !slopes && !bias) return null;
  const { Hq, Sq } = g;
  const [sB, sH, sI, sJ] = bias?.strides ?? [0, 0, 0, 0];
  const bv = bias?.values;
  return (s, row, p, kp) => {
    if (c > 0) s = c * Math.tanh(s / c);
    if (slopes || bv) {
      const i = row % Sq;
      const bh = Math.floor(row / Sq);
      const h = bh % Hq;
      if (slopes) s -= slopes[h] * Math.abs(p - kp);
      if (bv) s += bv[Math.floor(bh / Hq) * sB + h * sH + i * sI + kp * sJ];
    }
    return s;
  };
}

/**
 * The plain-JS tile kernel of one call (`T` keys a tile); with `params` it applies their
 * variant's score changes (the keys' positions are `keyOffset + j`).
 */
export function scalarTileKernel(
  buf: AttentionBuffers,
  g: AttentionGeometry,
  T: number,
  params?: WalkParams,
): TileKernel {
  const { N, D, unitRows } = g;
  const transform = scoreTransform(buf, g, params);
  const off = params?.keyOffset ?? 0;
  const Rc = rowsPerPass(unitRows, D * 16);
  const qs = new Float64Array(Rc * D);
  const o = new Float64Array(Rc * D);
  const Tn = Math.min(T, Math.max(1, N)); // a tile never spans more than N keys
  const s = new Float64Array(Tn);
  const kvs = kvArrays(buf);
  // A tile's K/V rows, read where they are when they lie one after another (contiguous K/V,
  // or a tile inside one page), else copied here exactly (a tile across pages).
  // Quantized rows are always copied here, dequantized (`_kv_quant.ts`).
  const quant = buf.quant;
  const f16 = buf.k instanceof Float16Array;
  const kCopy = f16 ? new Float16Array(Tn * D) : new Float32Array(Tn * D);
  const vCopy = f16 ? new Float16Array(Tn * D) : new Float32Array(Tn * D);
  let kNow: CpuArray = kCopy;
  let vNow: CpuArray = vCopy;
  /**
   * Points `kNow`, `vNow` at keys `[t0, t1)`; returns the element of key 0 in them (key j at
   * `+ j·D`).
   */
  const keysAt = (kv: KVRows, t0: number, t1: number): number => {
    if (!quant && kv.locate(t0, t1) === t1 - t0) {
      kNow = kvs.k[kv.buffer] as CpuArray;
      vNow = kvs.v[kv.buffer] as CpuArray;
      return kv.at - t0 * D;
    }
    for (let j = t0; j < t1;) {
      const run = kv.locate(j, t1);
      const at = kv.at;
      const c = kv.buffer;
      const to = (j - t0) * D;
      if (quant) {
        const [k8, v8] = [kvs.k[c], kvs.v[c]] as CpuQuantArray[];
        dequantRows(quant, k8, quant.k[c], at, run, N, D, kCopy as Float32Array, to, D);
        dequantRows(quant, v8, quant.v[c], at, run, N, D, vCopy as Float32Array, to, D);
      } else {
        kCopy.set(kvs.k[c].subarray(at, at + run * D) as CpuArray, to);
        vCopy.set(kvs.v[c].subarray(at, at + run * D) as CpuArray, to);
      }
      j += run;
    }
    kNow = kCopy;
    vNow = vCopy;
    return -t0 * D;
  };
  return {
    rows: Rc,
    rowStride: D,
    q: qs,
    o,
    tile(rows: PassRows, R: number, kv: KVRows, t0: number, t1: number): void {
      const { end: ends, start: starts, m, l } = rows;
      const kBase = keysAt(kv, t0, t1);
      const k = kNow; // locals for the loops below
      const v = vNow;
      for (let a = 0; a < R; a++) {
        const end = Math.min(t1, ends[a]);
        const t0a = Math.max(t0, starts[a]); // a window may start this row's keys later
        if (end <= t0a) continue; // the tile holds none of this row's keys
        const qa = a * D;
        const row = rows.row[a];
        const p = rows.pos[a];
        let mt = -Infinity;
        for (let j = t0a; j < end; j++) {
          const ko = kBase + j * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += qs[qa + d] * k[ko + d];
          if (transform) dot = transform(dot, row, p, off + j);
          s[j - t0] = dot;
          mt = maxOrNaN(mt, dot);
        }
        const alpha = rescaleRow(m, l, a, mt);
        if (alpha < 0) continue; // every score −∞: the tile adds nothing
        const mNew = m[a];
        let la = l[a];
        for (let d = 0; d < D; d++) o[qa + d] *= alpha;
        for (let j = t0a; j < end; j++) {
          const e = Math.exp(s[j - t0] - mNew);
          la += e;
          const vo = kBase + j * D;
          for (let d = 0; d < D; d++) o[qa + d] += e * v[vo + d];
        }
        l[a] = la;
      }
    },
  };
}
