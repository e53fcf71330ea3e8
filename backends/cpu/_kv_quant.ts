/**
 * Quantized K/V on the CPU (VARIANTS.md, "Quantized KV"; `AttentionPlan.kvScales`): the tile
 * kernels stage quantized rows as float32 `scale · value` — int8 the integer, float8e4m3 its
 * decoded value — rounded to float32 once, exactly as `la.dequantize` computes them (the
 * product of a float32 scale and an 8-bit value is exact in a double, so one rounding). So
 * attention over quantized K/V has the bits of float32 attention over `dequantize(qt)`.
 *
 * @module
 */
import type { AttentionInputs } from "../backend.ts";
import { E4M3_VALUES } from "../../tensor/float8.ts";
import { type CpuQuantArray, cpuValues } from "./_storage.ts";

/** The scales of quantized K/V, per buffer of `kvArrays` (one, or the page buffers). */
export interface KVQuant {
  /** float8e4m3 codes (decoded through the table), else int8 values. */
  e4m3: boolean;
  /** One scale per (b, kv head) (`[B, Hkv]`), else one per row (`[B, Hkv, N]` or per page). */
  perHead: boolean;
  k: Float32Array[];
  v: Float32Array[];
}

/** The scales of the call's inputs, or undefined for float K/V. */
export function kvQuant(
  kDtype: string,
  inputs: AttentionInputs | undefined,
): KVQuant | undefined {
  if (kDtype !== "int8" && kDtype !== "float8e4m3") return undefined;
  const f32 = (t: { id: unknown }) => cpuValues(t as never) as Float32Array;
  const pages = inputs?.pages;
  if (pages) {
    if (!pages.kScalePages || !pages.vScalePages) {
      throw new Error(`cpu attention: ${kDtype} pages without scale pages (a bug)`);
    }
    return {
      e4m3: kDtype === "float8e4m3",
      perHead: false,
      k: pages.kScalePages.map(f32),
      v: pages.vScalePages.map(f32),
    };
  }
  if (!inputs?.kScale || !inputs.vScale) {
    throw new Error(`cpu attention: ${kDtype} K/V without kScale/vScale (a bug)`);
  }
  return {
    e4m3: kDtype === "float8e4m3",
    perHead: inputs.kScale.shape.length === 2,
    k: [f32(inputs.kScale)],
    v: [f32(inputs.vScale)],
  };
}

/**
 * Writes `run` consecutive rows from element `at` of `src` (as `KVRows.locate` found them) as
 * float32 rows `stride` apart from `dst[to]`. A row's scale: element `at / D` of the buffer's
 * scales (row r of K/V or of a page buffer has scale r), or per head `(b · Hkv + h)` =
 * `at / (N · D)` of contiguous `[B, Hkv, N, D]` storage.
 */
export function dequantRows(
  q: KVQuant,
  src: CpuQuantArray,
  scales: Float32Array,
  at: number,
  run: number,
  N: number,
  D: number,
  dst: Float32Array,
  to: number,
  stride: number,
): void {
  const vals = q.e4m3 ? E4M3_VALUES : null;
  for (let i = 0; i < run; i++) {
    const s = rowScale(q, scales, at, i, N, D);
    const from = at + i * D;
    const o = to + i * stride;
    for (let d = 0; d < D; d++) {
      const x = src[from + d];
      dst[o + d] = s * (vals ? vals[x] : x);
    }
  }
}

/**
 * The scale of row `i` of a run that starts at element `at` of its buffer (see
 * {@link dequantRows}).
 */
export function rowScale(
  q: KVQuant,
  scales: Float32Array,
  at: number,
  i: number,
  N: number,
  D: number,
): number {
  const row0 = at / D;
  return scales[q.perHead ? Math.floor(row0 / N) : row0 + i];
}

/**
 * The scales of `run` rows from element `at` ({@link rowScale}'s rows `0 … run − 1`) into `dst`
 * from index `to`: one copy of a run of per-token scales, or the head's one scale repeated.
 */
export function copyRowScales(
  q: KVQuant,
  scales: Float32Array,
  at: number,
  run: number,
  N: number,
  D: number,
  dst: Float32Array,
  to: number,
): void {
  if (q.perHead) dst.fill(rowScale(q, scales, at, 0, N, D), to, to + run);
  else dst.set(scales.subarray(at / D, at / D + run), to);
}
