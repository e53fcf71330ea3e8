/**
 * The CPU attention kernels: one executor for every schedule (flash, flash-decoding, lean)
 * and the merge of normalised states.
 *
 * The executor walks the schedule's workers in order (`_segment_walk.ts`). Each segment folds
 * its tiles into one online-softmax state `(m, l, o)` per query row of the unit (the GQA
 * group's heads × the rows of the query block), a tile at a time as FlashAttention-2 does: the
 * tile's scores, its max, one rescale of `o`. A unit done by one segment is normalised and
 * written at once; a cut unit leaves its state in a partial slot and is finished after all
 * workers, by folding its slots in `cuts[i].partials` order — the fixed order is what makes
 * results bit-reproducible.
 *
 * The tile loops run on WebAssembly SIMD kernels (`_simd_tile.ts` on `_attention_simd.ts`) in
 * float32, as the GPU backend does: every row of a unit shares one float32 copy of each K/V
 * tile, so K/V are read once per GQA group; scores, p and each tile's sums (Σp, P·V) are
 * float32. The running `(m, l, o)` (tile max, α = exp(m_old − m_new), `l`, and `o` in the wasm
 * memory), the partial states, the merge of cut units and the final `o / l` are doubles.
 * Inputs and outputs keep their storage dtype, lse is float32. A plain-JS kernel in doubles
 * (`_scalar_tile.ts`) stands in where WebAssembly is missing (it agrees to float32 rounding,
 * tests/cpu_kernels_test.ts).
 *
 * @module
 */
import type { AttentionInputs, AttentionParams, TensorInfo } from "../backend.ts";
import { isPlainVariant, PLAIN_ATTENTION } from "../../schedule/attention_plan.ts";
import type { LeanSchedule } from "../../schedule/lean_schedule.ts";
import { type AttentionGeometry, attentionGeometry } from "../../schedule/geometry.ts";
import { allocCpu, type CpuArray, type CpuData, cpuValues, wasmMemoryOf } from "./_storage.ts";
import { simdKernels } from "./_attention_simd.ts";
import { clearState, foldSink, foldState, rowState, writeRow } from "./_online_softmax.ts";
import {
  type AttentionBuffers,
  stateStride,
  type TileKernel,
  unitRow,
  type WalkParams,
  walkSegments,
} from "./_segment_walk.ts";
import { keysPerTile, simdTileKernel } from "./_simd_tile.ts";
import { scalarTileKernel } from "./_scalar_tile.ts";
import { kvArrays, walkedKvShape } from "./_kv_rows.ts";
import { kvQuant } from "./_kv_quant.ts";

export type { AttentionBuffers };

/**
 * Runs the segments of workers `[w0, w1)` of the schedule: writes uncut units to out/lse and
 * cut pieces to their partial slots. Workers touch disjoint memory, so any split of the
 * worker range over threads gives the same bits.
 */
export function runWorkers(
  buf: AttentionBuffers,
  g: AttentionGeometry,
  params: WalkParams,
  w0: number,
  w1: number,
): void {
  walkSegments(tileKernel(buf, g, params), buf, g, params, w0, w1);
}

/**
 * Runs schedule workers one at a time as `claim()` hands them out (their numbers, until one
 * past the last), with one tile kernel: threads that claim from one shared counter balance
 * themselves, and the bits are those of any other split (workers touch disjoint memory).
 */
export function runClaimed(
  buf: AttentionBuffers,
  g: AttentionGeometry,
  params: WalkParams,
  claim: () => number,
): void {
  const kernel = tileKernel(buf, g, params);
  const G = params.schedule.workers.length;
  for (let w = claim(); w < G; w = claim()) walkSegments(kernel, buf, g, params, w, w + 1);
}

/** The tile kernel of a call: the SIMD one for plain attention, else the plain-JS one. */
function tileKernel(buf: AttentionBuffers, g: AttentionGeometry, params: WalkParams): TileKernel {
  const T = keysPerTile(params.schedule.plan.tileSize, params.kvLens); // scratch: keys visited
  // The SIMD tile computes textbook scores only: variants (and the window's row starts) run
  // on the plain-JS tile, which implements every score change.
  const plain = isPlainVariant(params.variant ?? PLAIN_ATTENTION);
  const simd = plain ? simdKernels() : null;
  return simd ? simdTileKernel(simd, buf, g, T) : scalarTileKernel(buf, g, T, params);
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
  const { out, lse, partials, sinks } = buf;
  const { D, unitRows, Sq, Hq } = g;
  const sinkOf = (row: number) => sinks![Math.floor(row / Sq) % Hq];
  const stride = stateStride(g);
  const st = rowState(D);
  const rowsOf = (u: number, fn: (r: number, row: number) => void) => {
    const { b, kvHead, qBlock } = schedule.units[u];
    for (let r = 0; r < unitRows; r++) {
      const row = unitRow(g, b, kvHead, qBlock, r);
      if (row >= 0) fn(r, row);
    }
  };
  for (const cut of schedule.cuts) {
    rowsOf(cut.unit, (r, row) => {
      clearState(st);
      for (const slot of cut.partials) {
        const po = (slot * unitRows + r) * stride;
        foldState(st, partials[po], partials[po + 1], partials, po + 2);
      }
      if (sinks) foldSink(st, sinkOf(row)); // once, after every piece
      writeRow(out, lse, row, D, st.m, st.l, st.o);
    });
  }
  clearState(st);
  for (let u = 0; u < schedule.units.length; u++) {
    if (schedule.units[u].tiles === 0) {
      // No keys: the identity, or with a sink its state alone (out = 0, lse = z).
      rowsOf(
        u,
        (_r, row) => writeRow(out, lse, row, D, sinks ? sinkOf(row) : -Infinity, +!!sinks, st.o),
      );
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
  inputs?: AttentionInputs,
  variant = PLAIN_ATTENTION,
): AttentionBuffers {
  const rows = g.B * g.Hq * g.Sq;
  const paged = inputs?.pages;
  const quant = kvQuant(k.dtype, inputs);
  const buf: AttentionBuffers = {
    ...variantBuffers(variant, inputs),
    ...paged && {
      pages: {
        k: paged.kPages.map((t) => cpuValues(t)),
        v: paged.vPages.map((t) => cpuValues(t)),
        blockTable: (paged.blockTable as CpuData).values as Int32Array,
      },
    },
    ...quant && { quant },
    q: cpuValues(q),
    k: cpuValues(k),
    v: cpuValues(v),
    out: allocCpu(rows * g.D, q.dtype),
    lse: allocCpu(rows, "float32") as Float32Array,
    partials: new Float64Array(
      new SharedArrayBuffer(Math.max(8, schedule.numPartials * g.unitRows * (g.D + 2) * 8)),
    ),
  };
  const arrays = kvArrays(buf);
  if ([...arrays.k, ...arrays.v].some((x) => wasmMemoryOf(x))) {
    buf.memories = { k: arrays.k.map(wasmMemoryOf), v: arrays.v.map(wasmMemoryOf) };
  }
  return buf;
}

/** The variant's inputs as the walk reads them (only those the run's variant uses). */
function variantBuffers(
  variant: AttentionParams["variant"],
  inputs: AttentionInputs | undefined,
): Pick<AttentionBuffers, "sinks" | "slopes" | "bias"> {
  const r: Pick<AttentionBuffers, "sinks" | "slopes" | "bias"> = {};
  if (variant.sinks && inputs?.sinks) r.sinks = cpuValues(inputs.sinks) as Float32Array;
  if (variant.alibi && inputs?.alibiSlopes) {
    r.slopes = cpuValues(inputs.alibiSlopes) as Float32Array;
  }
  if (variant.bias && inputs?.bias) {
    const [b0, h0, s0, n0] = inputs.bias.shape;
    // Row-major strides of the 4-D bias; a size-1 dim broadcasts (stride 0).
    r.bias = {
      values: cpuValues(inputs.bias),
      strides: [b0 > 1 ? h0 * s0 * n0 : 0, h0 > 1 ? s0 * n0 : 0, s0 > 1 ? n0 : 0, n0 > 1 ? 1 : 0],
    };
  }
  return r;
}

/** Attention executing `params.schedule` in this thread (`inputs`: the variant's tensors). */
export function cpuAttention(
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  params: AttentionParams,
  inputs?: AttentionInputs,
): { out: CpuArray; lse: CpuArray } {
  const g = attentionGeometry(
    q.shape,
    walkedKvShape(q.shape, k.shape, params.paged),
    params.schedule,
  );
  const buf = attentionBuffers(q, k, v, g, params.schedule, inputs, params.variant);
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
  const st = rowState(D);
  for (let row = 0; row < rows; row++) {
    clearState(st);
    for (let s = 0; s < os.length; s++) foldState(st, ls[s][row], 1, os[s], row * D);
    writeRow(out, lse as Float32Array, row, D, st.m, st.l, st.o);
  }
  return { out, lse };
}
