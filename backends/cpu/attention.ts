/**
 * The CPU attention kernels: one executor for every schedule (flash, flash-decoding, lean)
 * and the merge of normalised states.
 *
 * The executor walks the schedule's workers in order. Each segment folds its tiles into one
 * online-softmax state `(m, l, o)` per query row of the unit (the GQA group's heads × the
 * rows of the query block), a tile at a time as FlashAttention-2 does: the tile's scores, its
 * max, one rescale of `o`. A unit done by one segment is normalised and written at once; a cut
 * unit leaves its state in a partial slot and is finished after all workers, by folding its
 * slots in `cuts[i].partials` order — the fixed order is what makes results bit-reproducible.
 *
 * The tile loops run on WebAssembly SIMD kernels (`_attention_simd.ts`) in float32, as the GPU
 * backend does: every row of a unit shares one float32 copy of each K/V tile, so K/V are read
 * once per GQA group; scores, p and each tile's sums (Σp, P·V) are float32. The running
 * `(m, l, o)` (tile max, α = exp(m_old − m_new), `l`, and `o` in the wasm memory), the partial
 * states, the merge of cut units and the final `o / l` are doubles. Inputs and outputs
 * keep their storage dtype, lse is float32. A plain-JS loop in doubles stands in where
 * WebAssembly is missing (it agrees to float32 rounding, tests/cpu_kernels_test.ts).
 *
 * @module
 */
import type { AttentionParams, TensorInfo } from "../backend.ts";
import type { LeanSchedule } from "../../schedule/lean_schedule.ts";
import { type AttentionGeometry, attentionGeometry } from "../../schedule/geometry.ts";
import { allocCpu, type CpuArray, cpuValues } from "./cpu_backend.ts";
import { type SimdKernels, simdKernels } from "./_attention_simd.ts";

/** Arrays the executor reads and writes; all plain typed arrays so Workers can share them. */
export interface AttentionBuffers {
  q: CpuArray;
  k: CpuArray;
  v: CpuArray;
  out: CpuArray;
  lse: Float32Array;
  /** Partial states, `numPartials · unitRows · (D + 2)`: per row `m, l, o[0..D)`. */
  partials: Float64Array;
}

/** Stride of one row's state in the partial buffer. */
function stateStride(g: AttentionGeometry): number {
  return g.D + 2;
}

/**
 * Runs the segments of workers `[w0, w1)` of the schedule: writes uncut units to out/lse and
 * cut pieces to their partial slots. Workers touch disjoint memory, so any split of the
 * worker range over threads gives the same bits.
 */
export function runWorkers(
  buf: AttentionBuffers,
  g: AttentionGeometry,
  params: Pick<AttentionParams, "scale" | "causal" | "kvLens" | "schedule">,
  w0: number,
  w1: number,
): void {
  const simd = simdKernels();
  if (simd) runWorkersSimd(simd, buf, g, params, w0, w1);
  else runWorkersScalar(buf, g, params, w0, w1);
}

/** Bytes of per-row wasm scratch (q, o, scores, …) one pass over a unit may use. */
const SIMD_ROW_SCRATCH = 32 << 20;

/** Byte offsets of one call's scratch in the wasm memory. */
interface SimdLayout {
  q: number;
  o: number;
  s: number;
  alpha: number;
  cnt: number;
  mx: number;
  sum: number;
  k: number;
  v: number;
  raw: number;
  bytes: number;
}

function simdLayout(R: number, Dp: number, Tn: number): SimdLayout {
  let at = 0;
  const take = (bytes: number) => {
    const here = at;
    at += Math.ceil(bytes / 16) * 16;
    return here;
  };
  const q = take(R * Dp * 4);
  const o = take(R * Dp * 8);
  const s = take(R * Tn * 4);
  const alpha = take(R * 8); // also the ≥ 16 bytes pexp's masked tail may read past s
  const cnt = take(R * 4);
  const mx = take(R * 4);
  const sum = take(R * 4);
  const k = take(Tn * Dp * 4);
  const v = take(Tn * Dp * 4);
  const raw = take(Tn * Dp * 2);
  return { q, o, s, alpha, cnt, mx, sum, k, v, raw, bytes: at };
}

/**
 * The executor on the wasm kernels: per segment, each key tile is staged as float32 once and
 * used by every row of the unit (the GQA group × the query block), so K/V are read once per
 * unit rather than once per query row. The per-tile max, α and the running `l` stay here in
 * doubles, in the same per-tile order as the scalar loop.
 */
function runWorkersSimd(
  K: SimdKernels,
  buf: AttentionBuffers,
  g: AttentionGeometry,
  params: Pick<AttentionParams, "scale" | "causal" | "kvLens" | "schedule">,
  w0: number,
  w1: number,
): void {
  const { q, k, v, out, lse, partials } = buf;
  const { Hq, Hkv, Sq, N, D, group, rowsPerBlock, unitRows } = g;
  const { scale, causal, kvLens, schedule } = params;
  const T = schedule.plan.tileSize;
  const Tn = Math.min(T, Math.max(1, N)); // a tile never spans more than N keys
  const Dp = Math.ceil(D / 16) * 16;
  // Rows per pass over a unit's tiles: all of them unless the per-row scratch would pass
  // SIMD_ROW_SCRATCH (huge GQA groups × query blocks × D); then K/V tiles are staged once per
  // chunk of rows. An even chunk keeps the kernels' row pairing.
  const perRow = Dp * 12 + Tn * 4 + 32;
  const chunk = Math.max(2, 2 * Math.floor(SIMD_ROW_SCRATCH / perRow / 2));
  const Rc = Math.min(unitRows, chunk);
  const L = simdLayout(Rc, Dp, Tn);
  const have = K.memory.buffer.byteLength;
  if (have < L.bytes) K.memory.grow(Math.ceil((L.bytes - have) / 65536));
  const mem = K.memory.buffer;
  const Q = new Float32Array(mem, L.q, Rc * Dp);
  const O = new Float64Array(mem, L.o, Rc * Dp);
  const S = new Float32Array(mem, L.s, Rc * Tn);
  const A = new Float64Array(mem, L.alpha, Rc);
  const C = new Int32Array(mem, L.cnt, Rc);
  const MX = new Float32Array(mem, L.mx, Rc);
  const SUM = new Float32Array(mem, L.sum, Rc);
  const f16 = k instanceof Float16Array;
  const raw16 = new Uint16Array(mem, L.raw, Tn * Dp);
  // The kernels read whole Dp rows: the padding of q and of the staged rows must be zero.
  if (Dp !== D) new Uint8Array(mem, 0, L.bytes).fill(0);
  const kSrc = f16 ? new Uint16Array(k.buffer, k.byteOffset, k.length) : k as Float32Array;
  const vSrc = f16 ? new Uint16Array(v.buffer, v.byteOffset, v.length) : v as Float32Array;
  const kTile = new Float32Array(mem, L.k, Tn * Dp);
  const vTile = new Float32Array(mem, L.v, Tn * Dp);
  /**
   * `n` keys of `src` from element `base` → float32 rows of stride Dp at `tile` (float32 is a
   * plain copy, float16 a copy of the bits and one conversion pass).
   */
  const stage = (src: Uint16Array | Float32Array, base: number, n: number, tile: Float32Array) => {
    const dst = f16 ? raw16 : tile;
    if (Dp === D) {
      dst.set(src.subarray(base, base + n * D));
    } else {
      for (let j = 0; j < n; j++) dst.set(src.subarray(base + j * D, base + (j + 1) * D), j * Dp);
    }
    if (f16) K.cvt16(L.raw, tile.byteOffset, n * Dp);
  };
  const rowOf = new Int32Array(Rc);
  const endOf = new Int32Array(Rc);
  const unitSlot = new Int32Array(Rc);
  const m = new Float64Array(Rc);
  const l = new Float64Array(Rc);
  const stride = stateStride(g);
  for (let w = w0; w < w1; w++) {
    for (const seg of schedule.workers[w]) {
      const { b, kvHead, qBlock } = schedule.units[seg.unit];
      const len = kvLens[b];
      const kBase = (b * Hkv + kvHead) * N * D;
      const keyStart = seg.tileStart * T;
      const keyEnd = Math.min(seg.tileEnd * T, len);
      for (let r0 = 0; r0 < unitRows; r0 += Rc) {
        // The chunk's live rows, packed: a = 0..R-1 ↔ unit row r.
        let R = 0;
        let segEnd = keyStart;
        for (let r = r0; r < Math.min(unitRows, r0 + Rc); r++) {
          const h = kvHead * group + Math.floor(r / rowsPerBlock);
          const i = qBlock * rowsPerBlock + (r % rowsPerBlock);
          if (i >= Sq) continue; // the last query block may be short
          const row = (b * Hq + h) * Sq + i;
          const qo = row * D;
          for (let d = 0; d < D; d++) Q[R * Dp + d] = q[qo + d] * scale;
          const visible = causal ? Math.min(len, len - Sq + i + 1) : len;
          const end = Math.min(keyEnd, visible);
          if (end > segEnd) segEnd = end;
          rowOf[R] = row;
          endOf[R] = end;
          unitSlot[R] = r;
          m[R] = -Infinity;
          l[R] = 0;
          R++;
        }
        O.fill(0, 0, R * Dp);
        for (let t0 = keyStart; t0 < segEnd; t0 += T) {
          const t1 = Math.min(t0 + T, segEnd);
          const n = t1 - t0;
          stage(kSrc, kBase + t0 * D, n, kTile);
          K.scores(L.q, L.k, L.s, R, n, Dp, Tn);
          for (let a = 0; a < R; a++) {
            const c = Math.min(t1, endOf[a]) - t0;
            C[a] = 0;
            A[a] = 1;
            if (c <= 0) continue; // this row's keys ended before the tile
            const so = a * Tn;
            let mt = -Infinity;
            for (let j = so; j < so + c; j++) {
              const x = S[j];
              // NaN must win so a NaN input poisons the row as in the reference.
              if (!(x <= mt)) mt = Number.isNaN(mt) ? mt : x;
            }
            const mOld = m[a];
            const mNew = mOld >= mt ? mOld : mt;
            if (mNew === -Infinity) continue; // every score −∞: the tile adds nothing
            A[a] = mOld === -Infinity ? 0 : Math.exp(mOld - mNew);
            l[a] *= A[a];
            m[a] = mNew;
            MX[a] = mNew;
            C[a] = c;
          }
          K.pexp(L.s, R, Tn, L.cnt, L.mx, L.sum); // p = exp(s − m) in place, Σp per row
          for (let a = 0; a < R; a++) if (C[a] > 0) l[a] += SUM[a];
          stage(vSrc, kBase + t0 * D, n, vTile);
          K.pv(L.s, L.v, L.o, L.alpha, L.cnt, R, Dp, Tn);
        }
        for (let a = 0; a < R; a++) {
          const o = O.subarray(a * Dp, a * Dp + D);
          if (seg.partial === -1) {
            writeRow(out, lse, rowOf[a], D, m[a], l[a], o);
          } else {
            const po = (seg.partial * unitRows + unitSlot[a]) * stride;
            partials[po] = m[a];
            partials[po + 1] = l[a];
            for (let d = 0; d < D; d++) partials[po + 2 + d] = o[d];
          }
        }
      }
    }
  }
}

/** The plain-JS executor (where WebAssembly SIMD is unavailable). */
function runWorkersScalar(
  buf: AttentionBuffers,
  g: AttentionGeometry,
  params: Pick<AttentionParams, "scale" | "causal" | "kvLens" | "schedule">,
  w0: number,
  w1: number,
): void {
  const { q, k, v, out, lse, partials } = buf;
  const { Hq, Hkv, Sq, N, D, group, rowsPerBlock, unitRows } = g;
  const { scale, causal, kvLens, schedule } = params;
  const T = schedule.plan.tileSize;
  const qs = new Float64Array(D);
  const o = new Float64Array(D);
  const s = new Float64Array(Math.min(T, Math.max(1, N))); // a tile never spans more than N keys
  const stride = stateStride(g);
  for (let w = w0; w < w1; w++) {
    for (const seg of schedule.workers[w]) {
      const unit = schedule.units[seg.unit];
      const { b, kvHead, qBlock } = unit;
      const len = kvLens[b];
      const kBase = (b * Hkv + kvHead) * N * D;
      const keyStart = seg.tileStart * T;
      const keyEnd = Math.min(seg.tileEnd * T, len);
      for (let r = 0; r < unitRows; r++) {
        const h = kvHead * group + Math.floor(r / rowsPerBlock);
        const i = qBlock * rowsPerBlock + (r % rowsPerBlock);
        if (i >= Sq) continue; // the last query block may be short
        const row = (b * Hq + h) * Sq + i;
        const qo = row * D;
        for (let d = 0; d < D; d++) qs[d] = q[qo + d] * scale;
        const visible = causal ? Math.min(len, len - Sq + i + 1) : len;
        const end = Math.min(keyEnd, visible);
        let m = -Infinity;
        let l = 0;
        o.fill(0);
        for (let t0 = keyStart; t0 < end; t0 += T) {
          const t1 = Math.min(t0 + T, end);
          let mt = -Infinity;
          for (let j = t0; j < t1; j++) {
            const ko = kBase + j * D;
            let dot = 0;
            for (let d = 0; d < D; d++) dot += qs[d] * k[ko + d];
            s[j - t0] = dot;
            // NaN must win so a NaN input poisons the row as in the reference.
            if (!(dot <= mt)) mt = Number.isNaN(mt) ? mt : dot;
          }
          const mNew = m >= mt ? m : mt;
          if (mNew === -Infinity) continue; // every score −∞: the tile adds nothing
          const alpha = m === -Infinity ? 0 : Math.exp(m - mNew);
          l *= alpha;
          for (let d = 0; d < D; d++) o[d] *= alpha;
          for (let j = t0; j < t1; j++) {
            const p = Math.exp(s[j - t0] - mNew);
            l += p;
            const vo = kBase + j * D;
            for (let d = 0; d < D; d++) o[d] += p * v[vo + d];
          }
          m = mNew;
        }
        if (seg.partial === -1) {
          writeRow(out, lse, row, D, m, l, o);
        } else {
          const po = (seg.partial * unitRows + r) * stride;
          partials[po] = m;
          partials[po + 1] = l;
          for (let d = 0; d < D; d++) partials[po + 2 + d] = o[d];
        }
      }
    }
  }
}

function writeRow(
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

/**
 * Finishes the cut units (folding partial slots in the listed order) and writes the units
 * nobody visits (no keys) as the merge identity: out = 0, lse = −∞.
 */
export function finishCuts(
  buf: AttentionBuffers,
  g: AttentionGeometry,
  schedule: LeanSchedule,
): void {
  const { out, lse, partials } = buf;
  const { Hq, Sq, D, group, rowsPerBlock, unitRows } = g;
  const stride = stateStride(g);
  const o = new Float64Array(D);
  const rowsOf = (u: number, fn: (r: number, row: number) => void) => {
    const { b, kvHead, qBlock } = schedule.units[u];
    for (let r = 0; r < unitRows; r++) {
      const h = kvHead * group + Math.floor(r / rowsPerBlock);
      const i = qBlock * rowsPerBlock + (r % rowsPerBlock);
      if (i < Sq) fn(r, (b * Hq + h) * Sq + i);
    }
  };
  for (const cut of schedule.cuts) {
    rowsOf(cut.unit, (r, row) => {
      let m = -Infinity;
      let l = 0;
      o.fill(0);
      for (const slot of cut.partials) {
        const po = (slot * unitRows + r) * stride;
        const mB = partials[po];
        const lB = partials[po + 1];
        const mNew = m >= mB ? m : mB;
        if (mNew === -Infinity) continue; // both identities
        const alpha = m === -Infinity ? 0 : Math.exp(m - mNew);
        const beta = mB === -Infinity ? 0 : Math.exp(mB - mNew);
        l = alpha * l + beta * lB;
        for (let d = 0; d < D; d++) o[d] = alpha * o[d] + beta * partials[po + 2 + d];
        m = mNew;
      }
      writeRow(out, lse, row, D, m, l, o);
    });
  }
  for (let u = 0; u < schedule.units.length; u++) {
    if (schedule.units[u].tiles === 0) {
      rowsOf(u, (_r, row) => writeRow(out, lse, row, D, -Infinity, 0, o));
    }
  }
}

/** Allocates the outputs and scratch of one call. */
export function attentionBuffers(
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  g: AttentionGeometry,
  schedule: LeanSchedule,
): AttentionBuffers {
  const rows = g.B * g.Hq * g.Sq;
  return {
    q: cpuValues(q),
    k: cpuValues(k),
    v: cpuValues(v),
    out: allocCpu(rows * g.D, q.dtype),
    lse: allocCpu(rows, "float32") as Float32Array,
    partials: new Float64Array(
      new SharedArrayBuffer(Math.max(8, schedule.numPartials * g.unitRows * (g.D + 2) * 8)),
    ),
  };
}

/** Attention executing `params.schedule` in this thread. */
export function cpuAttention(
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  params: AttentionParams,
): { out: CpuArray; lse: CpuArray } {
  const g = attentionGeometry(q.shape, k.shape, params.schedule);
  const buf = attentionBuffers(q, k, v, g, params.schedule);
  runWorkers(buf, g, params, 0, params.schedule.workers.length);
  finishCuts(buf, g, params.schedule);
  return { out: buf.out, lse: buf.lse };
}

/**
 * Merges normalised states `(out, lse)` in list order: a state is `(m = lse, l = 1, o = out)`,
 * folded with the pairwise merge (α := 0 for an identity, so no NaN from −∞ − −∞).
 */
export function cpuMergeStates(
  outs: readonly TensorInfo[],
  lses: readonly TensorInfo[],
): { out: CpuArray; lse: CpuArray } {
  const rows = lses[0].shape.reduce((a, b) => a * b, 1);
  const D = outs[0].shape[outs[0].shape.length - 1];
  const out = allocCpu(rows * D, outs[0].dtype);
  const lse = allocCpu(rows, "float32");
  const os = outs.map((t) => cpuValues(t));
  const ls = lses.map((t) => cpuValues(t));
  const o = new Float64Array(D);
  for (let row = 0; row < rows; row++) {
    let m = -Infinity;
    let l = 0;
    o.fill(0);
    for (let s = 0; s < os.length; s++) {
      const mB = ls[s][row];
      const mNew = m >= mB ? m : mB;
      if (mNew === -Infinity) continue;
      const alpha = m === -Infinity ? 0 : Math.exp(m - mNew);
      const beta = mB === -Infinity ? 0 : Math.exp(mB - mNew);
      l = alpha * l + beta;
      const ob = os[s];
      for (let d = 0; d < D; d++) o[d] = alpha * o[d] + beta * ob[row * D + d];
      m = mNew;
    }
    writeRow(out, lse as Float32Array, row, D, m, l, o);
  }
  return { out, lse };
}
