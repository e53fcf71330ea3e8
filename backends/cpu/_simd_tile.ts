/**
 * The segment walk's tile arithmetic on the WebAssembly SIMD kernels (`_attention_simd.ts`):
 * each key tile is staged as float32 once and used by every row of the pass (the GQA group ×
 * the query block), so K/V are read once per unit rather than once per query row. Scores, p
 * and each tile's sums are float32, as on the GPU backend; the per-tile max, α and the running
 * `l` stay in doubles, in the same per-tile order as the plain-JS kernel, and `o` is float64
 * in the wasm memory.
 *
 * @module
 */
import type { AttentionGeometry } from "../../schedule/geometry.ts";
import { SCRATCH_POOL_BYTES, type SimdKernels } from "./_attention_simd.ts";
import { LimitError } from "../../tensor/errors.ts";
import { rescaleRow } from "./_online_softmax.ts";
import {
  type AttentionBuffers,
  type PassRows,
  rowsPerPass,
  type TileKernel,
} from "./_segment_walk.ts";
import { type KVArray, kvArrays, type KVRows } from "./_kv_rows.ts";
import { copyRowScales, dequantRows } from "./_kv_quant.ts";
import type { CpuQuantArray } from "./_storage.ts";
import { type MemoryCopy, memoryCopy } from "./_wasm_copy.ts";

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
  rowScales: number;
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
  const sum = take(R * 4); // the tile's row maxima (smax), then its row sums (pexp)
  const k = take(Tn * Dp * 4);
  const v = take(Tn * Dp * 4);
  const raw = take(Tn * Dp * 2); // float16 bits, or int8 values (D ≤ Dp bytes a row)
  const rowScales = take(Tn * 4);
  return { q, o, s, alpha, cnt, mx, sum, k, v, raw, rowScales, bytes: at };
}

/**
 * Keys one tile of the walk can hold: the tile size, but no more than the longest sequence
 * (`kvLens`; a tile never spans keys past a sequence's length), so scratch is sized by the
 * keys visited — a `tileSize` of 2³⁰ over one key needs one key of scratch. Linear in B.
 */
export function keysPerTile(tileSize: number, kvLens: ArrayLike<number>): number {
  let most = 1;
  for (let b = 0; b < kvLens.length; b++) if (kvLens[b] > most) most = kvLens[b];
  return Math.min(tileSize, most);
}

/** WebAssembly memory cannot exceed 4 GiB (32-bit addresses). */
const WASM_MAX_BYTES = 2 ** 32 - 65536;

/**
 * The SIMD tile kernel of one call (`T` keys a tile, see {@link keysPerTile}), its scratch
 * laid out in `K.memory` — or, over {@link SCRATCH_POOL_BYTES}, in a fresh instance's memory
 * that is freed with the call. Throws {@link LimitError} where the scratch cannot fit
 * WebAssembly's 4 GiB.
 */
export function simdTileKernel(
  kernels: SimdKernels,
  buf: AttentionBuffers,
  g: AttentionGeometry,
  T: number,
): TileKernel {
  const { N, D, unitRows } = g;
  const Tn = Math.min(T, Math.max(1, N)); // a tile never spans more than N keys
  const Dp = Math.ceil(D / 16) * 16;
  const Rc = rowsPerPass(unitRows, Dp * 12 + Tn * 4 + 32);
  const L = simdLayout(Rc, Dp, Tn);
  if (L.bytes > WASM_MAX_BYTES) {
    throw new LimitError(
      `cpu attention: a tile of ${Tn} keys at head dimension ${D} needs ${L.bytes} bytes of ` +
        `scratch, over WebAssembly's 4 GiB; use a smaller tileSize`,
    );
  }
  const K = L.bytes > SCRATCH_POOL_BYTES ? kernels.fresh() : kernels;
  const have = K.memory.buffer.byteLength;
  try {
    if (have < L.bytes) K.memory.grow(Math.ceil((L.bytes - have) / 65536));
  } catch (e) {
    throw new LimitError(`cpu attention: cannot allocate ${L.bytes} bytes of scratch: ${e}`);
  }
  const mem = K.memory.buffer;
  const A = new Float64Array(mem, L.alpha, Rc);
  const C = new Int32Array(mem, L.cnt, Rc);
  const MX = new Float32Array(mem, L.mx, Rc);
  const SUM = new Float32Array(mem, L.sum, Rc);
  const f16 = buf.k instanceof Float16Array;
  const quant = buf.quant;
  const raw16 = new Uint16Array(mem, L.raw, Tn * Dp);
  // Quantized K/V with D a multiple of 16: rows copied as bytes, then decoded and scaled by
  // `dq8` / `dqe4m3`.
  const wasmQuant = quant !== undefined && D % 16 === 0;
  const raw8 = new Uint8Array(mem, L.raw, Tn * D);
  const rowScaleOf = new Float32Array(mem, L.rowScales, Tn);
  // The kernels read whole Dp rows: the padding of q and of the staged rows must be zero.
  if (Dp !== D) new Uint8Array(mem, 0, L.bytes).fill(0);
  // What `stage` copies from, per buffer of `kvArrays` (float16: the bits).
  const bits = (x: KVArray) =>
    f16 ? new Uint16Array(x.buffer, x.byteOffset, x.length) : x as Float32Array | CpuQuantArray;
  const kSrc = kvArrays(buf).k.map(bits);
  const vSrc = kvArrays(buf).v.map(bits);
  // K/V in shared WebAssembly memory (`buf.memories`; float32, float16 bits or 8-bit codes):
  // copied with memory.copy (`_wasm_copy.ts`).
  const copiers = (mems?: (WebAssembly.Memory | undefined)[]) =>
    mems?.map((m) => m ? memoryCopy(K.memory, m) : null) ?? [];
  const kCopy = copiers(buf.memories?.k);
  const vCopy = copiers(buf.memories?.v);
  const bpe = f16 ? 2 : 4;
  const kTile = new Float32Array(mem, L.k, Tn * Dp);
  const vTile = new Float32Array(mem, L.v, Tn * Dp);
  /**
   * Keys `[t0, t0 + n)` of `kv`'s selection in `src` → float32 rows of stride Dp at `tile`
   * (float32 is a plain copy, float16 a copy of the bits and one conversion pass, quantized
   * rows `scale · value` with `scales`), a run of consecutive rows (the whole tile, or the
   * part of it in one page) at a time.
   */
  const stage = (
    src: readonly (Uint16Array | Float32Array | CpuQuantArray)[],
    copy: readonly (MemoryCopy | null)[],
    scales: readonly Float32Array[] | undefined,
    kv: KVRows,
    t0: number,
    n: number,
    tile: Float32Array,
  ) => {
    const dst = f16 ? raw16 : tile;
    for (let j = t0; j < t0 + n;) {
      const run = kv.locate(j, t0 + n);
      const from = src[kv.buffer] as Uint16Array | Float32Array;
      const base = kv.at;
      const to = j - t0;
      const mc = copy[kv.buffer];
      if (wasmQuant) {
        const q8 = src[kv.buffer] as CpuQuantArray;
        if (mc) mc(L.raw + to * D, q8.byteOffset + base, run * D);
        else raw8.set(new Uint8Array(q8.buffer, q8.byteOffset + base, run * D), to * D);
        copyRowScales(quant, scales![kv.buffer], base, run, N, D, rowScaleOf, to);
      } else if (quant) {
        const q8 = src[kv.buffer] as CpuQuantArray;
        dequantRows(quant, q8, scales![kv.buffer], base, run, N, D, tile, to * Dp, Dp);
      } else if (mc) {
        const at = from.byteOffset + base * bpe;
        if (Dp === D) mc(dst.byteOffset + to * D * bpe, at, run * D * bpe);
        else {
          for (let i = 0; i < run; i++) {
            mc(dst.byteOffset + (to + i) * Dp * bpe, at + i * D * bpe, D * bpe);
          }
        }
      } else if (Dp === D) {
        dst.set(from.subarray(base, base + run * D), to * D);
      } else {
        for (let i = 0; i < run; i++) {
          dst.set(from.subarray(base + i * D, base + (i + 1) * D), (to + i) * Dp);
        }
      }
      j += run;
    }
    if (f16) K.cvt16(L.raw, tile.byteOffset, n * Dp);
    if (wasmQuant) {
      (quant!.e4m3 ? K.dqe4m3 : K.dq8)(L.raw, L.rowScales, tile.byteOffset, n, D, Dp);
    }
  };
  return {
    rows: Rc,
    rowStride: Dp,
    q: new Float32Array(mem, L.q, Rc * Dp),
    o: new Float64Array(mem, L.o, Rc * Dp),
    tile(rows: PassRows, R: number, kv: KVRows, t0: number, t1: number): void {
      const { end, m, l } = rows;
      const n = t1 - t0;
      stage(kSrc, kCopy, quant?.k, kv, t0, n, kTile);
      K.scores(L.q, L.k, L.s, R, n, Dp, Tn);
      // Each row's keys in the tile (none where they ended before it), then its tile max.
      for (let a = 0; a < R; a++) C[a] = Math.max(0, Math.min(t1, end[a]) - t0);
      K.smax(L.s, R, Tn, L.cnt, L.sum);
      for (let a = 0; a < R; a++) {
        A[a] = 1;
        if (C[a] === 0) continue;
        const alpha = rescaleRow(m, l, a, SUM[a]);
        if (alpha < 0) { // every score −∞: count 0 and α = 1 leave the row as it is
          C[a] = 0;
          continue;
        }
        A[a] = alpha;
        MX[a] = m[a];
      }
      K.pexp(L.s, R, Tn, L.cnt, L.mx, L.sum); // p = exp(s − m) in place, Σp per row
      for (let a = 0; a < R; a++) if (C[a] > 0) l[a] += SUM[a];
      stage(vSrc, vCopy, quant?.v, kv, t0, n, vTile);
      K.pv(L.s, L.v, L.o, L.alpha, L.cnt, R, Dp, Tn);
    },
  };
}
