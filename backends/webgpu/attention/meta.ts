/**
 * The uploaded form of a schedule: one u32 array (sizes, per-worker segment offsets, one
 * record a segment with its keys and sequence length, merge items) laid out as
 * `_wgsl_meta.ts` describes, so the GPU runs exactly the partition `attention/` computed.
 *
 * @module
 */
import { INVARIANT_MAX_CHUNK_KEYS } from "../../../schedule/limits.ts";
import type { AttentionParams } from "../../backend.ts";
import type { LeanSchedule, LeanSegment } from "../../../schedule/lean_schedule.ts";
import { META, META_SEG_OFFS, NEG_INF_BITS, probShift, SEG_WORDS } from "./_wgsl_meta.ts";
import type { Geometry } from "./_launch_geometry.ts";
import { type KernelVariant, variantWords } from "./_wgsl_variant.ts";
import type { FoldRun, FoldRuns } from "./_fold_runs.ts";

const NO_PARTIAL = 0xffffffff;

function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0];
}

/**
 * Flattens the schedule (and the reduce items) into one u32 array. With `fold` (a kernel that
 * runs pieces in runs: piece runs, or the subgroup-fold order; `_fold_runs.ts`) each record is
 * a run of pieces and the partial states are publication slots of `fold.subgroups` states a
 * row each (1 for piece runs).
 */
export function buildMeta(
  g: Geometry,
  params: AttentionParams,
  nx: { reduce: number; chunks: number },
  fused: boolean,
  variant: KernelVariant | null = null,
  fold: { subgroups: number; runs: FoldRuns } | null = null,
): Uint32Array {
  const s: LeanSchedule = params.schedule;
  const W = s.workers.length;
  const empty: number[] = [];
  for (let u = 0; u < s.units.length; u++) if (s.units[u].tiles === 0) empty.push(u);
  const runs = fold?.runs ?? null;
  let nsegs = 0;
  for (const run of runs?.workers ?? s.workers) nsegs += run.length;
  const items = s.cuts.length + empty.length;
  let slots = 0;
  for (const c of s.cuts) slots += c.partials.length;
  // A variant's words sit between the segment offsets and the segments (the kernels find
  // them from the worker count); a plain run has none, so its layout is unchanged.
  const vw = variant ? variantWords(params, g.B) : [];
  const varOff = META_SEG_OFFS + W + 1;
  const segsOff = varOff + vw.length;
  const itemsOff = segsOff + SEG_WORDS * nsegs;
  const slotsOff = itemsOff + 3 * items;
  const meta = new Uint32Array(slotsOff + slots);
  meta[META.B] = g.B;
  meta[META.Hq] = g.Hq;
  meta[META.Hkv] = g.Hkv;
  meta[META.Sq] = g.Sq;
  meta[META.N] = g.N;
  meta[META.D] = g.D;
  meta[META.group] = g.group;
  meta[META.rowsPerBlock] = g.rowsPerBlock;
  meta[META.qBlocks] = s.plan.qBlocks;
  meta[META.causal] = params.causal ? 1 : 0;
  meta[META.scaleBits] = f32Bits(params.scale);
  meta[META.negInfBits] = NEG_INF_BITS;
  meta[META.numWorkers] = W;
  meta[META.segsOff] = segsOff;
  meta[META.unitRows] = g.unitRows;
  // Items: the empty units, then the cut units (the in-kernel merge counts on a cut unit's
  // item, so the reduce pass then takes only the empty ones).
  meta[META.numItems] = fused ? empty.length : items;
  meta[META.itemsOff] = itemsOff;
  meta[META.partOOff] = runs
    ? runs.slots * fold!.subgroups * g.unitRows * 2
    : s.numPartials * g.unitRows * 2;
  meta[META.reduceNx] = nx.reduce;
  meta[META.reduceChunks] = nx.chunks;
  let longest = 0; // the most keys a row sees (its sink aside: l stays under 2)
  for (let b = 0; b < g.B; b++) longest = Math.max(longest, params.kvLens[b]);
  // A batch-invariant schedule's pieces hold at most the longest chunk of keys: the same
  // shift for every batch (the shift decides which tiny probabilities flush to zero).
  const T = s.plan.tileSize;
  if (s.kind === "invariant") longest = T * Math.ceil(INVARIANT_MAX_CHUNK_KEYS / T);
  meta[META.probShift] = probShift(longest);
  meta.set(vw, varOff);
  // Items and partial lists; each partial slot's item, first list word and piece count go
  // into its segment's record below.
  const slotCut = new Map<number, [number, number, number]>();
  let it = itemsOff;
  let sl = slotsOff;
  for (const u of empty) {
    meta[it++] = u;
    meta[it++] = sl;
    meta[it++] = 0;
  }
  for (let c = 0; c < s.cuts.length; c++) {
    const cut = s.cuts[c];
    meta[it++] = cut.unit;
    meta[it++] = sl;
    meta[it++] = cut.partials.length;
    for (const p of cut.partials) slotCut.set(p, [empty.length + c, sl, cut.partials.length]);
    for (const p of cut.partials) meta[sl++] = p;
  }
  const perUnit = g.Hkv * s.plan.qBlocks;
  let seg = 0;
  // Keys of tiles [t0, t1) of unit u: tile t covers keys from keyStart + t·T (a window skips
  // the keys before), the end clamped to the sequence length.
  const keys = (u: number, t0: number, t1: number, len: number) => {
    const x = s.units[u];
    return [x.keyStart + t0 * T, Math.min(x.keyStart + Math.min(t1 * T, x.keys), len)];
  };
  const records: readonly (readonly (LeanSegment | FoldRun)[])[] = runs?.workers ?? s.workers;
  for (let w = 0; w < W; w++) {
    meta[META_SEG_OFFS + w] = seg;
    for (const r of records[w]) {
      const o = segsOff + SEG_WORDS * seg++;
      const len = params.kvLens[Math.floor(r.unit / perUnit)];
      meta[o] = r.unit;
      [meta[o + 1], meta[o + 2]] = keys(r.unit, r.tileStart, r.tileEnd, len);
      meta[o + 4] = len;
      if ("pieceTiles" in r) {
        // A run of pieces (piece runs or the subgroup-fold order).
        meta[o + 3] = r.slot < 0 ? NO_PARTIAL : r.slot;
        if (r.slot >= 0) [meta[o + 5], meta[o + 6], meta[o + 7]] = [r.counter, r.first, r.count];
        meta[o + 8] = (r.pieceTiles * T) | (r.host ? 0x80000000 : 0);
      } else {
        meta[o + 3] = r.partial < 0 ? NO_PARTIAL : r.partial;
        const cut = slotCut.get(r.partial);
        if (cut) [meta[o + 5], meta[o + 6], meta[o + 7]] = cut;
      }
    }
  }
  meta[META_SEG_OFFS + W] = seg;
  return meta;
}
