/**
 * WebGPU attention: executes any {@link LeanSchedule} (FlashAttention-2, FlashDecoding,
 * LeanAttention) with one main dispatch — one workgroup per worker, walking its segments. A
 * unit cut into pieces (a (batch, kv-head) whose keys several workers share) is merged in
 * the listed order: in the subgroup kernel by the workgroup that finishes its last piece (an
 * integer counter a cut unit says which; `storageBarrier` is a device-scope fence in wgpu),
 * else by a second, reduce dispatch, which also writes units without keys.
 *
 * The schedule is uploaded as one u32 array (sizes, per-worker segment offsets, one record a
 * segment with its keys and sequence length, merge items) so the GPU runs exactly the
 * partition `attention/` computed. Kernels
 * are in `_attention_wgsl.ts`: a subgroup kernel (D a multiple of 32, with `subgroups`), a
 * workgroup-memory kernel for devices without subgroups, and a generic kernel for everything
 * else; the first that applies runs. Arithmetic and partial states are f32; results are
 * deterministic (fixed merge orders whoever merges, no float atomics, no workgroup waits on
 * another).
 *
 * Measured on an H200 (f16 K/V, D = 128, decode; bench/NOTES.md, 2026-11-26 06:18 UTC), as % of
 * a streaming read of the same bytes: MHA 93–98 % at ≥ 268 MB, GQA (4 rows a unit) 89–92 % at
 * ≥ 1 GB but 83–87 % at 268 MB. A call with an in-kernel merge costs ≈ 11–12 µs
 * however little it reads (a dependent dispatch ≈ 2 µs of it), so calls under ≈ 100 MB are far
 * from the streaming limit (17 MB: 12–18 µs).
 *
 * A visible NaN or +∞ score makes its row NaN (out and lse), as in the float64 reference:
 * kernels track it with a bit test per score (compilers may assume no NaN, and WGSL `max`
 * may drop one) and carry it in partial states as l = NaN.
 *
 * @module
 */
import { type AttentionGeometry, attentionGeometry } from "../../schedule/geometry.ts";
import { bandwidthOf, parallelismOf } from "./_gpus.ts";
import type { AttentionParams, DataId, LeanGridProblem, TensorInfo } from "../backend.ts";
import { leanSchedule } from "../../schedule/lean_schedule.ts";
import { MAX_WORKERS } from "../../schedule/limits.ts";
import type { GpuBinding, GpuContext } from "./context.ts";
import type { LeanSchedule } from "../../schedule/lean_schedule.ts";
import { LimitError } from "../../tensor/errors.ts";
import {
  type Elem,
  genericKey,
  genericWgsl,
  MERGE_WG,
  type MergeConfig,
  mergeKey,
  mergeWgsl,
  META,
  META_SEG_OFFS,
  REDUCE_WG,
  reduceWgsl,
  SEG_WORDS,
  type SgConfig,
  sgKey,
  sgWgsl,
  WGM_WG,
  type WgmConfig,
  wgmKey,
  wgmTile,
  wgmWgsl,
} from "./_attention_wgsl.ts";

/** Knobs of the attention kernels (for benchmarks; defaults are picked per device). */
export interface AttentionTuning {
  /**
   * Force a kernel: `"sg"` (subgroups), `"wgm"` (workgroup memory) or `"generic"`; default: the
   * first of these that applies. A forced kernel that does not apply falls back in that order.
   */
  kernel?: "sg" | "wgm" | "generic";
  /** Threads per workgroup of the subgroup kernel (default 256). */
  wg?: number;
  /** Lanes per key of the subgroup kernel (4–32, at most the subgroup size; default by rows). */
  L?: number;
  /**
   * Keys per slot per iteration of the subgroup kernel (default: as many as keep a batch's K/V
   * within 64 registers a lane, at most 8; at most 4 for units of four rows with at most 1,024
   * keys a worker).
   */
  U?: number;
  /**
   * Prefetch the next batch of keys before the current batch's math (default: on for units of
   * four rows with more than 1,024 keys a worker, else off).
   */
  pf?: boolean;
  /** Butterfly reduction of the dot products (default on where U·rows is a power of two). */
  bf?: boolean;
  /** Rotated key loop: first loads before q (default: on for multi-row units). */
  rot?: boolean;
  /**
   * Row groups of the subgroup kernel (1, 2, 4 or 8; default 1): a unit's rows are split
   * across the subgroups of a workgroup, which stream the same keys (K/V from DRAM once, then
   * L1/L2), so each lane holds fewer rows of q and output — fewer registers and shuffles per
   * key for GQA decode. Reduced to what divides the rows and the subgroups per workgroup.
   */
  rs?: number;
  /**
   * Workgroup-staged key tiles in the subgroup kernel (default off): the next tile of K/V is
   * loaded (coalesced, into registers) while the current one is processed from workgroup
   * memory, so loads stay in flight during the math. Falls back to off where the tile does
   * not fit in workgroup memory.
   */
  ws?: boolean;
  /**
   * Per-row mask of the P·V terms past a row's causal end, in the batches of a segment that
   * hold such keys (`0 · ∞ = NaN` would otherwise leak a hidden ±∞ value). Default: on where
   * the rows of a unit end at different keys (causal with more than one query row) and with
   * staged tiles; off for decode, where no row ends before the segment (keys past the segment
   * load as zero instead). Forcing it off for causal prefill gives NaN for a hidden ±∞ value.
   */
  tailMask?: boolean;
  /**
   * Vote before the running max in the subgroup kernel (default: on for units of two or more
   * rows): the shuffle reduction of a batch's max runs only when some lane's score exceeds
   * the row's running max. Same results bit for bit.
   */
  lazyMax?: boolean;
  /**
   * Merge cut units inside the subgroup kernel (default on): the last workgroup to finish a
   * piece of a unit merges the unit's pieces in the listed order, so a call is one dispatch
   * instead of two. Same results bit for bit as the reduce pass.
   */
  fusedMerge?: boolean;
}

const NEG_INF_BITS = 0xff800000;
const NO_PARTIAL = 0xffffffff;

function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0];
}

/** Smallest subgroup size the adapter reports, when it reports one. */
function subgroupMinSize(ctx: GpuContext): number | undefined {
  const info = (ctx.device as unknown as { adapterInfo?: { subgroupMinSize?: number } })
    .adapterInfo;
  const n = info?.subgroupMinSize;
  return typeof n === "number" && n > 0 ? n : undefined;
}

/** Largest subgroup size the adapter reports, when it reports one. */
function subgroupMaxSize(ctx: GpuContext): number | undefined {
  const info = (ctx.device as unknown as { adapterInfo?: { subgroupMaxSize?: number } })
    .adapterInfo;
  const n = info?.subgroupMaxSize;
  return typeof n === "number" && n > 0 ? n : undefined;
}

/** A guess of the number of streaming multiprocessors (compute units) from the description. */
export function computeUnits(ctx: GpuContext): number {
  return parallelismOf(ctx.description).parallelism;
}

/**
 * The lean `grid` (workers) this backend wants: two 256-thread workgroups per compute unit —
 * one resident wave with few partials; measured best against 1, 3, 4 and 8 per unit on an
 * H200 (bench/NOTES.md).
 */
export function defaultGrid(ctx: GpuContext): number {
  return computeUnits(ctx) * 2;
}

/**
 * GPU time of a call's second (reduce) pass, with the barrier before it, in microseconds: on
 * an H200 the reduce pass took 0.6–4.5 µs a call more than the in-kernel merge
 * ({@link FUSED_MERGE_US}) at 1k–16k keys once dispatches share a compute pass (bench/NOTES.md,
 * session 4; it was 17–20 µs with a pass a dispatch, run 4).
 */
const REDUCE_PASS_US = 7;

/**
 * What merging cut units inside the subgroup kernel adds to a call, in microseconds: a
 * device-scope barrier after each cut piece and, on the last piece's worker, one round trip
 * for the pieces' states. An estimate: on an H200 a lean call with the merge took 12 µs where
 * flash's took 9 µs at N = 64 (bench/_floor.ts, bench/NOTES.md session 4).
 */
const FUSED_MERGE_US = 3;

/**
 * Streaming speed of one worker of the subgroup kernel, as a fraction of its compute unit's
 * share of the read ceiling, by resident workers a compute unit (H200, bench/NOTES.md):
 * one-row (MHA) units 0.85 alone and 0.95 two a unit (flash vs lean at 128 units, N ≥ 64k);
 * units of several rows (GQA) hold more registers, fit one a unit and are instruction-bound
 * at ≈ 0.55 (flash (1,32,8) 64k: 19 GB/s a worker; lean's main pass: 51 % of the ceiling).
 */
function streamEfficiency(unitRows: number, workersPerCu: number): number {
  if (unitRows > 1) return 0.55;
  return workersPerCu >= 2 ? 0.95 : 0.85;
}

/** Workers of the subgroup kernel resident on one compute unit (registers; see above). */
function residentWorkers(unitRows: number): number {
  return unitRows > 1 ? 1 : 2;
}

/**
 * Fixed costs of a worker, in microseconds, for each worker a compute unit runs in turn: its
 * start (q loaded, the first K/V round trips) and end (the subgroups' states merged, the
 * output or partial written), and each further segment of its run. Estimates: on an H200
 * (run 13), (1,32,8) 4k took 62.5 µs with 264 workers (two waves of one resident GQA worker a
 * unit, ≈ 2 tiles each) and 50.9 with FlashDecoding's 128 (one wave, 4 tiles each); a
 * one-row (MHA) worker loads and writes a quarter of that, and 1 µs (not 2) fits session 3's
 * measurement that (1,32,32) and (1,64,64) at 2k–4k keys ran 7 % faster on 256 workers than
 * on 128 (bench/NOTES.md).
 */
function workerUs(unitRows: number): number {
  return unitRows > 1 ? 6 : 1;
}
const SEGMENT_US = 2;

/**
 * Streaming speed of runs that start or end inside a unit, relative to runs of whole pieces of
 * one unit, on an H200 with the in-kernel merge (bench/NOTES.md, session 3). Multi-row (GQA):
 * 132 workers on 8 or 128 units were 2–5 % slower than 128 where 3 % less work a worker
 * predicted 3 % faster. One row (MHA): 264 workers on 32, 64 or 128 units were 0.3–1.8 % slower
 * than 256 at ≥ 1 GB and 7 % slower at 2k–4k keys.
 */
const GQA_CROSSING = 0.93;
const MHA_CROSSING = 0.95;

/**
 * Streaming speed of multi-row runs in two or more waves (one resident a compute unit):
 * (1,32,8) 256k on 264 workers was 7.5 % slower than on 128 with 2.4 % less work a worker.
 */
const GQA_WAVES = 0.9;

/**
 * The lean grid for one problem, from a few stream-K grids: the shape-free `base` (two
 * workers a compute unit), one worker a unit (with equal units nothing is cut: one pass), one
 * worker a compute unit (one wave where only one fits), and the largest multiples of the
 * units within either (runs end on unit boundaries: one segment a worker). Stream-K over any
 * of them is still the lean schedule.
 *
 * Model (known GPUs only; others keep `base`): a run of `t` tiles streams at the compute
 * unit's share of the bandwidth times {@link streamEfficiency}; the busiest compute unit holds
 * `ceil(G / CUs)` runs while they are resident (else whole waves); each segment costs
 * {@link SEGMENT_US}; merging cut units in the kernel {@link FUSED_MERGE_US}, and a second pass
 * {@link REDUCE_PASS_US} when some unit has no keys. The lowest prediction wins, ties to `base`.
 */
export function leanGridFor(ctx: GpuContext, problem: LeanGridProblem, base: number): number {
  const { parallelism: cus, known } = parallelismOf(ctx.description);
  const bw = bandwidthOf(ctx.description);
  if (!known || bw === undefined) return base;
  const plan = problem.plan;
  const units = plan.batch * plan.kvHeads * (plan.qBlocks ?? 1);
  if (units < 1) return base;
  const kvBytes = problem.kvDtype === "float16" && ctx.features.f16 ? 2 : 4;
  const tileBytes = 2 * plan.tileSize * problem.D * kvBytes;
  const cuBytesPerUs = (bw * 1e3) / cus;
  const predictUs = (grid: number): number => {
    const s = leanSchedule({ ...plan, grid });
    let longest = 0;
    let segments = 0;
    for (const run of s.workers) {
      let t = 0;
      for (const g of run) t += g.tileEnd - g.tileStart;
      longest = Math.max(longest, t);
      segments = Math.max(segments, run.length);
    }
    // Runs the busiest compute unit streams one after another (or shares): resident workers
    // split its bandwidth; past the resident slots, whole waves follow each other.
    const occ = residentWorkers(problem.unitRows);
    const perCu = grid <= cus * occ ? Math.ceil(grid / cus) : Math.ceil(grid / (cus * occ)) * occ;
    // Runs stream slower when they start or end inside a unit, and multi-row (GQA) runs in
    // more than one wave, beyond the fixed costs below (MHA_CROSSING, GQA_CROSSING, GQA_WAVES).
    // One-row runs cross where a worker has several segments (a ragged batch crosses at any
    // grid: (16,32,32) [64k, 1k×15] took 480 µs on 264 workers, 514 on 512, one a unit); for
    // GQA the measured criterion is a grid that is not a multiple of the units (H200,
    // bench/NOTES.md, session 3; ragged GQA batches were measured only at 128 and 132).
    const multi = problem.unitRows > 1;
    const eff = streamEfficiency(problem.unitRows, Math.min(perCu, occ)) *
      (multi ? (grid % units !== 0 ? GQA_CROSSING : 1) : segments > 1 ? MHA_CROSSING : 1) *
      (multi && perCu > occ ? GQA_WAVES : 1);
    const empty = s.units.some((u) => u.tiles === 0);
    // Known GPUs have subgroups: cut units merge in the kernel, empty ones need the reduce pass.
    const second = (empty ? REDUCE_PASS_US : 0) + (s.cuts.length > 0 ? FUSED_MERGE_US : 0);
    const fixed = perCu * (workerUs(problem.unitRows) + Math.max(0, segments - 1) * SEGMENT_US);
    return (perCu * longest * tileBytes) / cuBytesPerUs / eff + fixed + second;
  };
  let best = base;
  let bestUs = predictUs(base);
  const aligned = units * Math.floor(base / units);
  const alignedWave = units * Math.floor(cus / units);
  for (const g of [units, aligned, cus, alignedWave]) {
    if (g < 1 || g === best || g > MAX_WORKERS) continue;
    const us = predictUs(g);
    if (us < bestUs) [best, bestUs] = [g, us];
  }
  return best;
}

/** 2-D dispatch of `n` workgroups within the per-dimension limit. */
function grid2d(ctx: GpuContext, n: number): [number, number] {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  const nx = Math.max(1, Math.min(n, max));
  const ny = Math.ceil(n / nx);
  if (ny > max) {
    throw new LimitError(
      `webgpu attention: ${n} workgroups exceed ${max}² (maxComputeWorkgroupsPerDimension)`,
    );
  }
  return [nx, Math.max(1, ny)];
}

interface Geometry extends AttentionGeometry {
  /** Visible keys (summed over units) per lean worker: the work a workgroup streams. */
  keysPerWorker: number;
  /** Workers (workgroups) of the schedule. */
  workers: number;
  /** Units the schedule cuts into pieces (merged in the kernel or by the reduce pass). */
  cuts: number;
}

/** Flattens the schedule (and the reduce items) into one u32 array. */
function buildMeta(
  g: Geometry,
  params: AttentionParams,
  nx: { reduce: number; chunks: number },
  fused: boolean,
): Uint32Array {
  const s: LeanSchedule = params.schedule;
  const W = s.workers.length;
  let nsegs = 0;
  for (const run of s.workers) nsegs += run.length;
  const empty: number[] = [];
  for (let u = 0; u < s.units.length; u++) if (s.units[u].tiles === 0) empty.push(u);
  const items = s.cuts.length + empty.length;
  let slots = 0;
  for (const c of s.cuts) slots += c.partials.length;
  const segsOff = META_SEG_OFFS + W + 1;
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
  meta[META.partOOff] = s.numPartials * g.unitRows * 2;
  meta[META.reduceNx] = nx.reduce;
  meta[META.reduceChunks] = nx.chunks;
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
  const T = s.plan.tileSize;
  const perUnit = g.Hkv * s.plan.qBlocks;
  let seg = 0;
  for (let w = 0; w < W; w++) {
    meta[META_SEG_OFFS + w] = seg;
    for (const sg of s.workers[w]) {
      const o = segsOff + SEG_WORDS * seg++;
      const len = params.kvLens[Math.floor(sg.unit / perUnit)];
      meta[o] = sg.unit;
      meta[o + 1] = sg.tileStart * T;
      meta[o + 2] = Math.min(sg.tileEnd * T, len);
      meta[o + 3] = sg.partial < 0 ? NO_PARTIAL : sg.partial;
      meta[o + 4] = len;
      const cut = slotCut.get(sg.partial);
      if (cut) [meta[o + 5], meta[o + 6], meta[o + 7]] = cut;
    }
  }
  meta[META_SEG_OFFS + W] = seg;
  return meta;
}

function checkBinding(ctx: GpuContext, what: string, bytes: number): void {
  const max = ctx.limits.maxStorageBufferBindingSize;
  if (bytes > max) {
    throw new LimitError(
      `webgpu attention: ${what} needs a ${bytes}-byte binding, device allows at most ${max} (maxStorageBufferBindingSize)`,
    );
  }
}

/**
 * Defaults for units of four or more rows (GQA decode), under the explicit tuning. Empty: the
 * staged-tile and row-group variants lost 10–35 points on an H200 (bench/NOTES.md, run 4).
 */
const MULTI_ROW_DEFAULTS: AttentionTuning = {};

/**
 * Keys per worker for which 4-row subgroups take a whole 32-lane subgroup per key (L = 32)
 * instead of 16 lanes, when the schedule has between one and two workers per compute unit
 * (the backend's lean grid is two): +1…+5 points of the streaming-read ceiling there on an
 * H200 in four runs; −4 above the range (≥ 1 GB of K/V), −1 below, and 5–20 points worse
 * with at most one worker per compute unit (lean grid 1×, flash with B·Hkv ≤ SMs) or three
 * (bench/NOTES.md, runs 4–7).
 */
const WIDE_KEY_WORK: readonly [number, number] = [256, 4096];

/**
 * Keys per worker up to which units of four rows (GQA decode, group 4) take 4 keys a slot per
 * iteration instead of 8: on an H200, (1,32,8) and (4,32,8) at 64–1,024 keys a worker ran 3–9 %
 * faster with 4 (1,024 keys of (16,32,8) 1k: equal), at 2,048 keys 1–3 % slower, at 4,096 5–11 %
 * slower; 8-row units lost 5 % with 4 at 1,024 keys (bench/NOTES.md, session 3).
 */
const SHORT_GQA_KEYS = 1024;

/** The subgroup kernel's configuration for this call, or null when it does not apply. */
function sgConfig(
  ctx: GpuContext,
  g: Geometry,
  kv: Elem,
  q: Elem,
  causal: boolean,
  explicit: AttentionTuning,
): SgConfig | null {
  const tuning: AttentionTuning = { ...(g.unitRows >= 4 ? MULTI_ROW_DEFAULTS : {}) };
  // Knobs given as undefined keep the default.
  for (const [k, v] of Object.entries(explicit)) {
    if (v !== undefined) (tuning as Record<string, unknown>)[k] = v;
  }
  if (tuning.kernel === "generic" || !ctx.features.subgroups) return null;
  const wg = tuning.wg ?? 256;
  if (
    wg > ctx.limits.maxComputeInvocationsPerWorkgroup || wg > ctx.limits.maxComputeWorkgroupSizeX
  ) return null;
  const minSg = subgroupMinSize(ctx) ?? 8;
  if (minSg < 8 || wg % minSg !== 0) return null;
  // Row groups: every row group needs a subgroup of its own in the workgroup (up to 128
  // lanes a subgroup where the adapter does not say).
  const maxSg = Math.max(minSg, subgroupMaxSize(ctx) ?? 128);
  let G = 1;
  const wantG = tuning.rs ?? 1;
  while (G * 2 <= wantG && G * 2 <= wg / maxSg) G *= 2;
  // Rows per pass: all of the unit's rows when q and the running output fit in registers at
  // the widest lane count, else the largest power of two that does (prefill, large GQA
  // groups); each further pass re-reads the segment's keys, mostly from cache.
  let Lmax = 8;
  while (Lmax * 2 <= Math.min(minSg, 32, g.D / 4)) Lmax *= 2;
  const fits = (r: number) => (r * g.D) / (Lmax * G) <= 64 && (r * g.D) / 4 <= wg;
  let RT = g.unitRows;
  if (!fits(RT)) {
    RT = 8 * G;
    while (RT > 1 && !fits(RT)) RT /= 2;
  }
  while (G > 1 && RT % G !== 0) G /= 2;
  const R = RT / G; // rows per subgroup
  // Lanes per key: the fewest (fewer shuffles, more keys in flight) that keep q and the
  // running output within 32 registers each per lane; at most the subgroup size.
  let L = tuning.L ?? 0;
  if (!L) {
    L = 8;
    while (L < minSg && (R * g.D) / L > 32) L *= 2;
    const [lo, hi] = WIDE_KEY_WORK;
    if (
      R === 4 && L === 16 && minSg >= 32 && g.D % 128 === 0 && g.keysPerWorker >= lo &&
      g.keysPerWorker <= hi && g.workers > computeUnits(ctx) && g.workers <= 2 * computeUnits(ctx)
    ) L = 32;
  }
  // A default L wider than this device's subgroups narrows to them (an explicit one fails).
  if (explicit.L === undefined && L > minSg) L = minSg;
  if (L > minSg || L < 4 || (L & (L - 1)) !== 0) return null;
  const E = g.D / L;
  if (g.D % (4 * L) !== 0 || E % 4 !== 0) return null;
  // Registers: q and the running output, E floats each per row.
  if (R * E > 64) return null;
  if ((RT * g.D) / 4 > wg) return null;
  const mlBytes = (wg / 8) * R * 8 + 16;
  const stateBytes = RT * g.D * 4;
  const room = ctx.limits.maxComputeWorkgroupStorageSize - mlBytes;
  let nsMax = Math.min(Math.floor(room / stateBytes), Math.max(1, wg / minSg / G), 8);
  if (nsMax < 1) return null;
  // Keys per slot per iteration: as many as keep the K/V registers of a batch ≤ 64 per lane
  // (more bytes in flight), at most 8; at most 4 for units of four rows when a worker has few
  // keys (SHORT_GQA_KEYS), where the shorter batch saves more latency than it loses.
  const loadRegs = kv === "f16" ? E : 2 * E;
  const uMax = R === 4 && g.keysPerWorker <= SHORT_GQA_KEYS ? 4 : 8;
  let U = tuning.U ?? Math.max(1, Math.min(uMax, Math.floor(64 / loadRegs)));
  // Staged tiles: at most 32 KB of K + V (half of it in flight as registers, 32 a thread
  // for 256 threads); the math reads them from workgroup memory in batches of U keys a slot,
  // at most 32 registers of K/V a lane (the loads are short now).
  let tile = 0;
  if (tuning.ws) {
    const S = wg / L / G;
    const keyBytes = 2 * g.D * (kv === "f16" ? 2 : 4);
    const nsWs = Math.min(nsMax, 4);
    const budget = Math.min(32768, room - nsWs * stateBytes - 16);
    let u = tuning.U === undefined ? Math.max(1, Math.min(U, Math.floor(32 / loadRegs))) : U;
    while (u > 1 && S * u * keyBytes > budget) u = Math.floor(u / 2);
    if (S * u * keyBytes <= budget) {
      U = u;
      tile = S * U;
      while (2 * tile * keyBytes <= budget) tile *= 2;
      nsMax = nsWs;
    }
  }
  const pow2 = (n: number) => (n & (n - 1)) === 0;
  const bf = (tuning.bf ?? true) && pow2(U * R);
  // Rotated loop for multi-row (GQA) units, whose heavier math gains from the first loads
  // overlapping q's; for one row it measured 0–4 points slower (bench/NOTES.md, run 3).
  // Prefetch (instead of the rotated loop) for units of four rows with long runs: 2 % faster
  // there on an H200 ((1,32,8) 64k / 256k, (4,32,8) 16k), not with ≤ 1,024 keys a worker.
  const pfDefault = R === 4 && g.keysPerWorker > SHORT_GQA_KEYS;
  const pf = (tuning.pf ?? pfDefault) && !tile;
  const rot = (tuning.rot ?? R > 1) && !pf && !tile;
  // The per-row mask costs 6–16 points on GQA decode even when run only in a segment's last
  // batch (bench/NOTES.md, runs 8–9), so it is on only where rows can end apart.
  const tm = tuning.tailMask ?? (tile > 0 || (causal && g.Sq > 1));
  const lz = tuning.lazyMax ?? R > 1;
  const fm = (tuning.fusedMerge ?? true) && g.cuts > 0;
  return { D: g.D, R, kv, q, wg, L, U, nsMax, pf, bf, rot, G, tile, tm, lz, fm };
}

/** The workgroup-memory decode kernel's configuration, or null when it does not apply. */
function wgmConfig(ctx: GpuContext, g: Geometry, kv: Elem, q: Elem): WgmConfig | null {
  const R = g.unitRows;
  const KT = wgmTile(g.D, R);
  if (KT === null) return null;
  const G = (WGM_WG * 4) / g.D;
  const fixed = R * g.D * 4 + 2 * R * WGM_WG * 4 + G * R * 8 + 64;
  const room = ctx.limits.maxComputeWorkgroupStorageSize - fixed;
  const grMax = Math.min(G, Math.floor(room / (R * g.D * 4)));
  if (grMax < 1) return null;
  return { D: g.D, R, kv, q, KT, grMax };
}

/** Keys the generic kernel stages at a time (its workgroup memory holds K and V as f32). */
function genericChunk(ctx: GpuContext, D: number): number {
  const room = Math.min(ctx.limits.maxComputeWorkgroupStorageSize, 16384);
  return Math.max(1, Math.min(32, Math.floor(room / (8 * D))));
}

/**
 * Executes an attention schedule on the GPU, with explicit kernel knobs where given
 * (benchmarks compare variants; the backend passes `WebGpuBackend.attentionTuning`).
 */
export function webgpuAttention(
  ctx: GpuContext,
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  params: AttentionParams,
  tuning: AttentionTuning = {},
): { out: DataId; lse: DataId } {
  const s = params.schedule;
  const g: Geometry = {
    ...attentionGeometry(q.shape, k.shape, s),
    keysPerWorker: 0,
    workers: s.workers.length,
    cuts: s.cuts.length,
  };
  const { B, Hq, Hkv, Sq, N, D } = g;
  if (s.workers.length > 0) {
    let keys = 0;
    for (let b = 0; b < B; b++) keys += Math.min(Math.max(params.kvLens[b], 0), N);
    g.keysPerWorker = (keys * Hkv * s.plan.qBlocks) / s.workers.length;
  }
  const rows = B * Hq * Sq;
  const out = ctx.alloc(rows * D, q.dtype);
  const lse = ctx.alloc(rows, "float32");
  const qT = ctx.wgslType(q.dtype);
  const kvT = ctx.wgslType(k.dtype);
  for (const [name, t] of [["q", q], ["k", k], ["v", v]] as const) {
    checkBinding(ctx, name, ctx.byteLength(t.id));
  }
  const partBytes = Math.max(16, s.numPartials * g.unitRows * (D + 2) * 4);
  checkBinding(ctx, "the partial states", partBytes);
  const W = s.workers.length;
  const want = tuning.kernel;
  const sg = W === 0 || want === "generic" || want === "wgm"
    ? null
    : sgConfig(ctx, g, kvT, qT, params.causal, tuning);
  const wgm = W === 0 || sg || want === "generic" ? null : wgmConfig(ctx, g, kvT, qT);
  const fused = sg?.fm ?? false;
  let items = fused ? 0 : s.cuts.length;
  for (const u of s.units) if (u.tiles === 0) items++;
  const mainGrid = grid2d(ctx, W);
  const chunks = Math.ceil((g.unitRows * D) / REDUCE_WG);
  const reduceGrid = grid2d(ctx, items * chunks);
  const nx = { main: mainGrid[0], reduce: reduceGrid[0], chunks };
  const metaBuf = ctx.scratchFrom(buildMeta(g, params, nx, fused));
  const part = ctx.scratch(partBytes);
  const outBuf = ctx.buffer(out);
  const lseBuf = ctx.buffer(lse);
  if (W > 0) {
    let pipe: GPUComputePipeline;
    if (sg) pipe = ctx.pipeline(sgKey(sg), () => sgWgsl(sg), "main");
    else if (wgm) pipe = ctx.pipeline(wgmKey(wgm), () => wgmWgsl(wgm), "main");
    else {
      const c = { D, kv: kvT, q: qT, C: genericChunk(ctx, D) };
      pipe = ctx.pipeline(genericKey(c), () => genericWgsl(c), "main");
    }
    const bindings = [
      metaBuf,
      ctx.buffer(q.id),
      ctx.buffer(k.id),
      ctx.buffer(v.id),
      outBuf,
      lseBuf,
      part,
    ];
    // The in-kernel merge's counters: one a cut unit (after the empty units' items), zeroed.
    if (fused) bindings.push(ctx.scratchFrom(new Uint32Array(items + s.cuts.length + 1)));
    ctx.dispatch(pipe, bindings, mainGrid, `attention-${params.algo}`);
  }
  if (items > 0) {
    const pipe = ctx.pipeline(`attn-reduce:D${D}:q${qT}`, () => reduceWgsl(D, qT), "main");
    ctx.dispatch(pipe, [metaBuf, outBuf, lseBuf, part], reduceGrid, "attention-reduce");
  }
  return { out, lse };
}

/**
 * Merges attention states in list order on the GPU: as many states per dispatch as the
 * storage-binding limit allows, carrying an f32 `(m, l, o)` accumulator between dispatches.
 */
export function webgpuMergeStates(
  ctx: GpuContext,
  outs: readonly TensorInfo[],
  lses: readonly TensorInfo[],
): { out: DataId; lse: DataId } {
  const rows = lses[0].shape.reduce((a, b) => a * b, 1);
  const D = outs[0].shape[outs[0].shape.length - 1];
  const out = ctx.alloc(rows * D, outs[0].dtype);
  const lse = ctx.alloc(rows, "float32");
  if (rows === 0) return { out, lse };
  // D = 0 still merges the lse: one thread a row.
  const n = rows * Math.max(D, 1);
  const [nx, ny] = grid2d(ctx, Math.ceil(n / MERGE_WG));
  const meta = ctx.scratchFrom(new Uint32Array([rows, D, nx, NEG_INF_BITS]));
  const maxSB = ctx.limits.maxStorageBuffersPerShaderStage;
  const accBytes = rows * (D + 2) * 4;
  checkBinding(ctx, "the merge accumulator", accBytes);
  let acc: GPUBuffer | null = null;
  let i = 0;
  const outT = ctx.wgslType(outs[0].dtype);
  while (true) {
    const hasAcc = acc !== null;
    const left = outs.length - i;
    const capFinal = Math.floor((maxSB - 1 - (hasAcc ? 1 : 0) - 2) / 2);
    const final = left <= capFinal;
    const cap = final ? left : Math.floor((maxSB - 1 - (hasAcc ? 1 : 0) - 1) / 2);
    if (cap < 1 && !final) {
      throw new LimitError(
        `webgpu mergeStates: needs at least 5 storage buffers per stage, device allows ${maxSB}`,
      );
    }
    const take = Math.min(cap, left);
    const ins = outs.slice(i, i + take).map((t) => ctx.wgslType(t.dtype));
    const cfg: MergeConfig = { ins, hasAcc, final, out: outT };
    const bindings: GpuBinding[] = [meta];
    if (acc) bindings.push(acc);
    for (let j = i; j < i + take; j++) {
      bindings.push(ctx.buffer(outs[j].id), ctx.buffer(lses[j].id));
    }
    let next: GPUBuffer | null = null;
    if (final) bindings.push(ctx.buffer(out), ctx.buffer(lse));
    else bindings.push(next = ctx.scratch(accBytes));
    ctx.dispatch(ctx.pipeline(mergeKey(cfg), () => mergeWgsl(cfg), "main"), bindings, [nx, ny]);
    i += take;
    if (final) break;
    acc = next;
  }
  return { out, lse };
}
