/**
 * The subgroup attention kernel's configuration: what each knob means, the pipeline key,
 * and the choice for one call from the device, the launch geometry and the tuning (the
 * measured defaults are in `tuning.ts`). The WGSL is in `subgroup_kernel.ts`.
 *
 * @module
 */
import type { GpuContext } from "../context.ts";
import type { Elem } from "./_wgsl_meta.ts";
import type { Geometry } from "./_launch_geometry.ts";
import { computeUnits } from "./cost_model.ts";
import {
  type AttentionTuning,
  MULTI_ROW_DEFAULTS,
  QUANT_E4M3_MHA_WG,
  QUANT_GQA_WG,
  SHORT_GQA_KEYS,
  WIDE_KEY_WORK,
} from "./tuning.ts";
import { type KernelVariant, variantKey } from "./_wgsl_variant.ts";
import { type PagedKernel, pagedKey } from "./_wgsl_paged.ts";
import { type QuantKernel, quantKey } from "./_wgsl_quant.ts";

/** Configuration of the subgroup (decode) kernel. */
export interface SgConfig {
  /** Head dim (multiple of 32). */
  D: number;
  /**
   * Rows per pass, compile-time: all rows of a unit (GQA group × rows per query block) for
   * decode; a power of two for longer query blocks, which the kernel covers in several passes.
   */
  R: number;
  /** K/V storage. */
  kv: Elem;
  /** Q and out storage. */
  q: Elem;
  /** Threads per workgroup. */
  wg: number;
  /** Lanes per key (power of two dividing the subgroup size). */
  L: number;
  /** Keys per slot per loop iteration. */
  U: number;
  /** Subgroup states merged per round in workgroup memory. */
  nsMax: number;
  /** Load the next batch of keys before the math of this one (register double-buffering). */
  pf: boolean;
  /** Butterfly reduction of the dot products (U·R must be a power of two). */
  bf: boolean;
  /** Rotated loop: the first batch loads before q, each next batch after the math. */
  rot: boolean;
  /**
   * Row groups (a power of two; 1 = off): the pass's `R · G` rows are split across the
   * subgroups of the workgroup, subgroup `sgid` taking rows `(sgid % G)·R …` of every key the
   * subgroups `sgid / G` stream. The G row groups read the same keys, so K/V come from DRAM
   * once and from L1/L2 G − 1 more times; each lane holds `R · D / L` values of q and of the
   * output instead of `R · G · D / L`. Needs at least G subgroups per workgroup.
   */
  G: number;
  /**
   * Keys per workgroup-staged tile (0 = off; else a multiple of `S · U`, S = wg / L / G):
   * the workgroup loads tile t + 1 of K and V with coalesced `wg`-wide reads into registers
   * while the subgroups do the math of tile t from workgroup memory, so loads stay in flight
   * during the math and each key costs registers once per workgroup (not once per row group
   * or per U-batch of a slot). Excludes `pf` and `rot`.
   */
  tile: number;
  /**
   * Select away the P·V terms of keys hidden from some row of the unit in the batches that
   * hold any (past the first row's causal end), since `0 · ∞ = NaN`: needed where the rows of
   * a unit end at different keys (causal prefill) and with staged tiles; decode loads zero
   * for keys past the segment instead (see `vUse`).
   */
  tm: boolean;
  /**
   * Vote before the running max: the subgroup reduces its batch's scores to a new max per row
   * (`subgroupMax`, a chain of shuffles per row) only when some lane holds a score above the
   * row's running max (`subgroupAny`, one vote); otherwise the max is unchanged and the
   * reduction is skipped. Same results bit for bit (a max over values ≤ m is m). Past the
   * first batches of a segment a new max is rare, so most batches skip it.
   */
  lz: boolean;
  /**
   * Merge cut units in this kernel (one dispatch): a worker that wrote a partial state counts
   * it on the unit's counter (`atomicAdd` after a `storageBarrier`); the worker that brings
   * the count to the unit's number of pieces merges them in the listed order, as the reduce
   * kernel would (same fold, same results bit for bit). Binds the counters (one zeroed u32 a
   * cut unit) at binding 7. No workgroup waits on another: the last to arrive does the work.
   * The partial states are then u32 words stored and loaded atomically (L2, not a stale L1).
   */
  fm: boolean;
  /**
   * With `fm`: publish and count a worker's partial states once, after its last segment,
   * instead of after each (one device-scope fence a worker; `_wgsl_merge.ts`,
   * `deferredMerge`). The same bits. Absent: false.
   */
  dm?: boolean;
  /**
   * Attention variant features (window, soft-cap, sinks, ALiBi, bias; `_wgsl_variant.ts`),
   * absent or null for plain attention. Variant kernels run without row groups and staged
   * tiles (both off by default).
   */
  v?: KernelVariant | null;
  /**
   * Workgroup barriers of the end-of-segment merge of the subgroups' states: 3 (absent), 2
   * (one round: the states' (m, l) and outputs published by one barrier) or 1 (and no barrier
   * after the merge's reads: two copies of the merge's workgroup arrays, alternating). The
   * same bits. Default: 2 for units of two or more rows, 3 for one row (bench/NOTES.md,
   * session (8)).
   */
  mb?: 1 | 2 | 3;
  /**
   * The subgroup-fold order of batch-invariant launches (`_wgsl_fold.ts`): absent or 0 for the
   * piece-by-piece order; else the subgroups a publication slot has room for (workgroup size /
   * the adapter's smallest subgroup size). Needs `fm` without `dm`, G = 1, no staged tiles, no
   * tail mask, no window and no held mode; the meta then holds runs (`_fold_runs.ts`).
   */
  sf?: number;
  /**
   * Piece runs (`_wgsl_piece_runs.ts`): a batch-invariant worker's consecutive pieces of a
   * unit stream as one segment, each piece's subgroups merged at its end and folded or
   * published; the piece-by-piece order's bits. Needs what `sf` needs (and excludes it); the
   * meta then holds runs (`_fold_runs.ts`) with one state a row a publication slot.
   */
  pr?: boolean;
  /**
   * With `pr`: pieces' subgroup states merged two at a time (`_wgsl_piece_runs.ts`): a piece's
   * end writes its subgroups' states to one of two copies of the merge's arrays, and every
   * second piece (and the run's last) one barrier publishes both, which are then merged and
   * folded in order (the same bits). Needs `mb` 2 and one round (at most `nsMax` subgroups of
   * the adapter's smallest size): `plan.ts` checks.
   */
  pp?: boolean;
  /** Paged K/V (`_wgsl_paged.ts`); absent or null for contiguous K/V. */
  pg?: PagedKernel | null;
  /**
   * Quantized K/V (`_wgsl_quant.ts`; `kv` is then "f32", the dequantized values' type): bytes
   * loaded 16, 8 or 4 to a vector (`sgLoadWidth`); no staged tiles. Absent or null for float.
   */
  qk?: QuantKernel | null;
}

/** Bytes of one copy of the merge's `(m, l)` array (and the kernel's other workgroup words). */
export const mergeMlBytes = (wg: number, R: number) => (wg / 8) * R * 8 + 16;

/**
 * Whether piece runs of `c` can merge two pieces a barrier (`SgConfig.pp`): two barriers a
 * merge (`mb` 2), every subgroup of the smallest size in one round, and room for two copies
 * of the merge's arrays in `storage` bytes of workgroup memory.
 */
export function pairedPiecesFit(c: SgConfig, minSubgroup: number, storage: number): boolean {
  const RT = c.R * c.G;
  const bytes = 2 * (mergeMlBytes(c.wg, c.R) + c.nsMax * RT * c.D * 4);
  return c.mb === 2 && c.G === 1 && c.wg / minSubgroup <= c.nsMax && bytes <= storage;
}

/** Pipeline cache key of a subgroup kernel. */
export function sgKey(c: SgConfig): string {
  return `attn-sg:D${c.D}:R${c.R}:kv${
    c.qk?.fmt ?? c.kv
  }:q${c.q}:wg${c.wg}:L${c.L}:U${c.U}:ns${c.nsMax}:pf${c.pf}:bf${c.bf}:rot${c.rot}:G${c.G}:T${c.tile}:tm${c.tm}:lz${c.lz}:fm${c.fm}${
    c.fm && c.dm ? ":dm" : ""
  }${c.mb && c.mb !== 3 ? `:mb${c.mb}` : ""}${c.sf ? `:sf${c.sf}` : ""}${c.pr ? ":pr" : ""}${
    c.pp ? ":pp" : ""
  }${variantKey(c.v)}${pagedKey(c.pg)}${quantKey(c.qk)}`;
}

/** Elements per vector load of K/V for the subgroup kernel. */
export function sgLoadWidth(c: Pick<SgConfig, "D" | "L" | "kv" | "qk">): number {
  const E = c.D / c.L;
  // Quantized bytes: 16 a vec4<u32> where a lane's row share allows, else 8 or 4.
  if (c.qk) return E % 16 === 0 ? 16 : E % 8 === 0 ? 8 : 4;
  if (c.kv === "f32") return 4;
  return E % 8 === 0 ? 8 : 4;
}

/** Smallest subgroup size the adapter reports, when it reports one. */
export function subgroupMinSize(ctx: GpuContext): number | undefined {
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

/** The subgroup kernel's configuration for this call, or null when it does not apply. */
export function sgConfig(
  ctx: GpuContext,
  g: Geometry,
  kv: Elem,
  q: Elem,
  causal: boolean,
  explicit: AttentionTuning,
  v: KernelVariant | null = null,
  qk: QuantKernel | null = null,
): SgConfig | null {
  const tuning: AttentionTuning = { ...(g.unitRows >= 4 ? MULTI_ROW_DEFAULTS : {}) };
  // Knobs given as undefined keep the default.
  for (const [k, v] of Object.entries(explicit)) {
    if (v !== undefined) (tuning as Record<string, unknown>)[k] = v;
  }
  if (tuning.kernel === "generic" || !ctx.features.subgroups) return null;
  const minSg = subgroupMinSize(ctx) ?? 8;
  const allowed = (n: number) =>
    n <= ctx.limits.maxComputeInvocationsPerWorkgroup && n <= ctx.limits.maxComputeWorkgroupSizeX &&
    n % minSg === 0;
  // Quantized decode with long runs (GQA-4; float8e4m3 one-row) in wider workgroups where the
  // device allows.
  const wide = qk === null || g.Sq !== 1
    ? null
    : g.unitRows === 4
    ? QUANT_GQA_WG
    : g.unitRows === 1 && qk.fmt === "e4m3"
    ? QUANT_E4M3_MHA_WG
    : null;
  const wideQuant = wide !== null && g.keysPerWorker > wide.keysOver && allowed(wide.wg) &&
    (wide.workersPerCu === undefined || g.workers <= wide.workersPerCu * computeUnits(ctx));
  const wg = tuning.wg ?? (wideQuant ? wide.wg : 256);
  if (minSg < 8 || !allowed(wg)) return null;
  // Row groups: every row group needs a subgroup of its own in the workgroup (up to 128
  // lanes a subgroup where the adapter does not say).
  const maxSg = Math.max(minSg, subgroupMaxSize(ctx) ?? 128);
  let G = 1;
  const wantG = v ? 1 : tuning.rs ?? 1;
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
      !qk && R === 4 && L === 16 && minSg >= 32 && g.D % 128 === 0 && g.keysPerWorker >= lo &&
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
  // The merge's barriers: two for multi-row units (GQA: a segment boundary 0.25 µs cheaper on
  // an H100), three for one-row units ((1,32,32) 16k ran 5 % slower with two; bench/NOTES.md,
  // session 8). With one, the merge's arrays are held twice.
  const mb = tuning.mergeBarriers ?? (R > 1 ? 2 : 3);
  const copies = mb === 1 ? 2 : 1;
  const mlBytes = copies * mergeMlBytes(wg, R);
  const stateBytes = copies * RT * g.D * 4;
  const room = ctx.limits.maxComputeWorkgroupStorageSize - mlBytes;
  let nsMax = Math.min(Math.floor(room / stateBytes), Math.max(1, wg / minSg / G), 8);
  if (nsMax < 1) return null;
  // Keys per slot per iteration: as many as keep the K/V registers of a batch ≤ 64 per lane
  // (more bytes in flight), at most 8; at most 4 for units of four rows when a worker has few
  // keys (SHORT_GQA_KEYS), where the shorter batch saves more latency than it loses.
  const loadRegs = qk ? E / 2 : kv === "f16" ? E : 2 * E;
  const uMax = R === 4 && g.keysPerWorker <= SHORT_GQA_KEYS ? 4 : 8;
  let U = tuning.U ?? Math.max(1, Math.min(uMax, Math.floor(64 / loadRegs)));
  // Staged tiles: at most 32 KB of K + V (half of it in flight as registers, 32 a thread
  // for 256 threads); the math reads them from workgroup memory in batches of U keys a slot,
  // at most 32 registers of K/V a lane (the loads are short now).
  let tile = 0;
  if (tuning.ws && !v && !qk) {
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
  // A right window, like causal, ends the rows of a unit at different keys.
  const tm = tuning.tailMask ?? (tile > 0 || ((causal || (v?.wr ?? false)) && g.Sq > 1));
  // One-row units over K/V with head scales take it too (and so held mode,
  // `_wgsl_probabilities.ts`): float8e4m3 multi-head decode 1–2 % faster on an H100.
  const lz = tuning.lazyMax ?? (R > 1 || qk?.sc === "head");
  const fm = (tuning.fusedMerge ?? true) && g.cuts > 0;
  const c: SgConfig = { D: g.D, R, kv, q, wg, L, U, nsMax, pf, bf, rot, G, tile, tm, lz, fm };
  if (fm && tuning.deferMerge) c.dm = true;
  if (mb !== 3) c.mb = mb;
  if (v) c.v = v;
  if (qk) c.qk = qk;
  return c;
}
