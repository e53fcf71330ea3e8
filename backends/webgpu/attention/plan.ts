/**
 * Planning an attention call on the GPU: everything that does not depend on buffers — the
 * kernel choice (the first of subgroup, workgroup-memory and generic that applies), pipeline
 * keys, the uploaded schedule, dispatch and scratch sizes — as one plain object. Planning
 * allocates nothing, so a refused call leaves nothing behind, and a launch can be reused for
 * every call of the same shape and schedule. `run.ts` executes it.
 *
 * @module
 */
import type { AttentionParams, TensorInfo } from "../../backend.ts";
import type { DType } from "../../../tensor/dtype.ts";
import type { GpuContext } from "../context.ts";
import type { Elem } from "./_wgsl_meta.ts";
import { launchGeometry } from "./_launch_geometry.ts";
import { checkBinding, grid2d } from "./_launch_limits.ts";
import { buildMeta } from "./meta.ts";
import { type AttentionTuning, invariantPieceFor } from "./tuning.ts";
import {
  pairedPiecesFit,
  type SgConfig,
  sgConfig,
  sgKey,
  sgLoadWidth,
  subgroupMinSize,
} from "./subgroup_config.ts";
import { type FoldRuns, foldRuns } from "./_fold_runs.ts";
import { heldMode } from "./_wgsl_probabilities.ts";
import {
  checkPagedBindings,
  checkPagedLaunch,
  pagedBindingCount,
  pagedKernel,
} from "./_wgsl_paged.ts";
import type { PagedLayout } from "../../../schedule/attention_plan.ts";
import { type WgmConfig, wgmConfig, wgmKey } from "./workgroup_memory_kernel.ts";
import { checkHeadDim, genericChunk, type GenericConfig, genericKey } from "./generic_kernel.ts";
import { REDUCE_WG, reduceKey } from "./reduce_kernel.ts";
import { quantBindingCount, quantKernel } from "./_wgsl_quant.ts";
import { kernelVariant, variantInputs } from "./_wgsl_variant.ts";
import { LimitError } from "../../../tensor/errors.ts";
import { smallestPiece } from "../../../schedule/limits.ts";
import { withinAdapterLoops } from "./_loop_budget.ts";

/**
 * Keys a worker is taken to stream when a batch-invariant launch picks its configuration (for
 * GQA: 8 keys a slot, prefetch on). Lean's short-worker choice (4 keys a slot) changed the
 * invariant cost by −4.5 to +1.5 points from 1k to 64k on an H100, the worst row +16.7 → +14.0 %
 * (bench/NOTES.md, session (18)): not adopted.
 */
const INVARIANT_CONFIG_KEYS = 2048;

/** The main kernel of a launch with its configuration. */
export type MainKernel =
  | { readonly kind: "sg"; readonly config: SgConfig }
  | { readonly kind: "wgm"; readonly config: WgmConfig }
  | { readonly kind: "generic"; readonly config: GenericConfig };

/** One dispatch of a launch: its pipeline key and its 2-D grid of workgroups. */
export interface PlannedDispatch {
  /** Pipeline cache key (names exactly what the WGSL depends on). */
  readonly key: string;
  /** Workgroups `[x, y]`. */
  readonly workgroups: readonly [number, number];
}

/** Everything an attention call needs that does not depend on its buffers. */
export interface WebGpuAttentionLaunch {
  /** Label of the main dispatch (`attention-<algo>`). */
  readonly label: string;
  /** Output rows (B · Hq · Sq): the lse has one float32 a row. */
  readonly rows: number;
  /** Output elements (rows · D). */
  readonly outElements: number;
  /** Output dtype (q's). */
  readonly outDtype: DType;
  /** The main kernel's dispatch; null when the schedule has no workers. */
  readonly main: (PlannedDispatch & { readonly kernel: MainKernel }) | null;
  /** The reduce pass (cut units not merged in the kernel, units without keys), or null. */
  readonly reduce:
    | (PlannedDispatch & { readonly D: number; readonly q: Elem; readonly sinks: boolean })
    | null;
  /**
   * The variant inputs (`AttentionInputs` names) the main dispatch binds after its own, in
   * binding order; empty for plain attention. The reduce pass binds `sinks` when it has them.
   */
  readonly inputs: readonly ("sinks" | "alibiSlopes" | "bias")[];
  /** The schedule as uploaded (see `meta.ts`); read-only once planned. */
  readonly meta: Uint32Array;
  /** Bytes of the partial-state scratch. */
  readonly partBytes: number;
  /** Zeroed u32 counters the in-kernel merge binds (0: no in-kernel merge). */
  readonly counters: number;
  /**
   * Quantized K/V: the scale granularity the main dispatch reads (it binds the K then the V
   * scales, per page buffer when paged, after the paged bindings), or null for float K/V.
   */
  readonly kvScales: "token" | "head" | null;
  /**
   * Paged K/V: the layout the main dispatch reads K/V through (it binds the block table and
   * the other page buffers after the variant inputs), or null for contiguous K/V.
   */
  readonly paged: PagedLayout | null;
}

/**
 * Plans an attention call with q and K/V of these shapes and dtypes (int8/float8e4m3 K/V with
 * `kvScales`, `AttentionPlan.kvScales`), with explicit kernel knobs where given. Throws
 * {@link LimitError} where the device cannot run it.
 */
export function planWebgpuAttention(
  ctx: GpuContext,
  q: Pick<TensorInfo, "shape" | "dtype">,
  k: Pick<TensorInfo, "shape" | "dtype"> & { readonly kvScales?: "token" | "head" },
  params: AttentionParams,
  tuning: AttentionTuning = {},
): WebGpuAttentionLaunch {
  params = withinAdapterLoops(ctx, q, k, params); // software adapters' loop limit
  const s = params.schedule;
  const g0 = launchGeometry(q.shape, k.shape, params);
  // A batch-invariant schedule's pieces must run with arithmetic the batch cannot change:
  // the kernel configuration is chosen as for one worker of a fixed length, whatever the load
  // (a long worker's: a worker streams several pieces in a row).
  const g = s.kind === "invariant"
    ? { ...g0, workers: 1, keysPerWorker: INVARIANT_CONFIG_KEYS }
    : g0;
  const { B, Hq, Sq, D } = g;
  checkHeadDim(ctx, D); // the largest D the fallback kernel takes on this device
  const rows = B * Hq * Sq;
  const qT = ctx.wgslType(q.dtype);
  const kvT = ctx.wgslType(k.dtype);
  let partBytes = Math.max(16, s.numPartials * g.unitRows * (D + 2) * 4);
  checkBinding(ctx, "the partial states", partBytes);
  const W = s.workers.length;
  const want = tuning.kernel;
  const bias = params.variant.bias;
  const v = kernelVariant(params, bias ? ctx.wgslType(bias.dtype) : null);
  const inputs = variantInputs(v);
  const qk = quantKernel(k.dtype, k.kvScales);
  let sg = W === 0 || want === "generic" || want === "wgm" ? null : sgConfig(
    ctx,
    g,
    kvT,
    qT,
    params.causal,
    {
      // A batch-invariant worker streams many short pieces: one fence a worker, not a piece.
      ...(s.kind === "invariant" ? { deferMerge: true } : {}),
      ...tuning,
    },
    v,
    qk,
  );
  // Paged K/V: the same kernel and configuration as contiguous K/V of this shape (so the
  // same bits), reading rows through the block table, which binds after the variant inputs.
  const pg = params.paged ? pagedKernel(params.paged) : null;
  if (pg && qk?.sc === "head") {
    throw new LimitError("attention: paged quantized K/V carry one scale a token, not a head");
  }
  // Quantized K/V: the scales bind last (after the paged bindings).
  const paging = pagedBindingCount(pg) + quantBindingCount(qk, pg);
  // The variant's inputs bind after the kernel's own 7 (8 with the in-kernel merge's
  // counters): without room for both, the cut units merge in the reduce pass instead.
  const maxSB = ctx.limits.maxStorageBuffersPerShaderStage;
  if (sg?.fm && 8 + inputs.length + paging > maxSB) sg = { ...sg, fm: false };
  // Batch-invariant decode: a worker's pieces of a unit as one run (the piece-by-piece bits),
  // or where asked the subgroup-fold order (multi-row units; other bits).
  let fold: { subgroups: number; runs: FoldRuns } | null = null;
  const foldWanted = tuning.foldOrder ?? false; // opt-in (tuning.ts)
  const piece = smallestPiece(invariantPieceFor(tuning, g.unitRows));
  const runsFit = sg !== null &&
    pieceRuns(sg, s, g.unitRows, piece, v?.wl ?? false, qk?.sc === "head");
  // The adapter's smallest subgroups (4, the least WebGPU allows, if unsaid).
  const minSg = subgroupMinSize(ctx) ?? 4;
  if (sg && runsFit && foldWanted) {
    // Room for every subgroup of the smallest size.
    const subgroups = sg.wg / minSg;
    fold = { subgroups, runs: foldRuns(s) };
    sg = { ...sg, dm: false, sf: subgroups };
  } else if (sg && runsFit && (tuning.pieceRuns ?? true)) { // default on (tuning.ts)
    fold = { subgroups: 1, runs: foldRuns(s) };
    const pairs = (tuning.pairedPieces ?? true) && // default on (tuning.ts)
      pairedPiecesFit(sg, minSg, ctx.limits.maxComputeWorkgroupStorageSize);
    sg = { ...sg, dm: false, pr: true, ...(pairs ? { pp: true } : {}) };
  }
  if (fold) {
    partBytes = Math.max(16, fold.runs.slots * fold.subgroups * g.unitRows * (D + 2) * 4);
    checkBinding(ctx, "the partial states", partBytes);
  }
  if (7 + inputs.length > maxSB) {
    throw new LimitError(
      `attention: the variant binds ${inputs.join(", ")} besides 7 buffers, the device allows ` +
        `${maxSB} storage buffers per shader stage`,
    );
  }
  if (pg) checkPagedBindings(ctx, 7 + inputs.length + quantBindingCount(qk, pg), pg);
  else if (qk && 9 + inputs.length > maxSB) {
    throw new LimitError(
      `attention: quantized K/V bind their K and V scales besides ${7 + inputs.length} ` +
        `buffers, the device allows ${maxSB} storage buffers per shader stage`,
    );
  }
  // The workgroup-memory kernel stages float K/V only: quantized K/V take another kernel.
  const wgm = W === 0 || sg || qk || want === "generic" ? null : wgmConfig(ctx, g, kvT, qT, v);
  const fused = sg?.fm ?? false;
  let items = fused ? 0 : s.cuts.length;
  for (const u of s.units) if (u.tiles === 0) items++;
  const mainGrid = grid2d(ctx, W);
  const chunks = Math.ceil((g.unitRows * D) / REDUCE_WG);
  const reduceGrid = grid2d(ctx, items * chunks);
  const nx = { main: mainGrid[0], reduce: reduceGrid[0], chunks };
  let main: WebGpuAttentionLaunch["main"] = null;
  if (W > 0) {
    let kernel: MainKernel;
    let key: string;
    if (sg) {
      const c: SgConfig = pg ? { ...sg, pg } : sg;
      if (pg) checkPagedLaunch(pg, g.Hkv, D, sgLoadWidth(c));
      [kernel, key] = [{ kind: "sg", config: c }, sgKey(c)];
    } else if (wgm) {
      const c: WgmConfig = pg ? { ...wgm, pg } : wgm;
      if (pg) checkPagedLaunch(pg, g.Hkv, D, 4);
      [kernel, key] = [{ kind: "wgm", config: c }, wgmKey(c)];
    } else {
      const c: GenericConfig = { D, kv: kvT, q: qT, C: genericChunk(ctx, D) };
      if (v) c.v = v;
      if (qk) c.qk = qk;
      if (pg) {
        checkPagedLaunch(pg, g.Hkv, D, 1);
        c.pg = pg;
      }
      [kernel, key] = [{ kind: "generic", config: c }, genericKey(c)];
    }
    main = { kernel, key, workgroups: mainGrid };
  }
  const sinks = v?.sinks ?? false;
  return {
    label: `attention-${params.algo}`,
    rows,
    outElements: rows * D,
    outDtype: q.dtype,
    main,
    reduce: items > 0
      ? { D, q: qT, sinks, key: reduceKey(D, qT, sinks), workgroups: reduceGrid }
      : null,
    inputs,
    meta: buildMeta(g, params, nx, fused, v, fold),
    partBytes,
    // One a cut unit, after the empty units' items.
    counters: fused ? items + s.cuts.length + 1 : 0,
    kvScales: qk?.sc ?? null,
    paged: params.paged ?? null,
  };
}

/**
 * Whether a batch-invariant launch can run its pieces in runs (piece runs, or the
 * subgroup-fold order): units of two or more rows in one pass, the in-kernel merge, the plain
 * decode key loop (no row groups, staged tiles, tail mask, window or held mode), and pieces of
 * whole key batches. All of it is fixed by the shapes, dtypes and options, never by the batch.
 * One-row units keep one segment a piece: in runs they were 5–30 % slower on an H200, and on it
 * some gave NaN, unexplained (bench/NOTES.md, sessions (11) and (13)); on an H100 still NaN with
 * the merge on every thread, and 256-key pieces in runs no cheaper at B = 16 (session (19)).
 */
function pieceRuns(
  c: SgConfig,
  s: { kind: string; plan: { tileSize: number } },
  unitRows: number,
  shortestPiece: number,
  window: boolean,
  headScales: boolean,
): boolean {
  const T = s.plan.tileSize;
  const batch = (c.wg / c.L / c.G) * c.U; // keys a loop iteration of the kernel takes
  return s.kind === "invariant" && c.fm && c.G === 1 && c.tile === 0 && !c.tm && !window &&
    !heldMode(c.bf, c.lz, headScales) && unitRows >= 2 && unitRows <= c.R &&
    shortestPiece % T === 0 && shortestPiece % batch === 0;
}
