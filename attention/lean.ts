/**
 * `leanAttention`: LeanAttention (arXiv 2405.10480), stream-K for attention.
 *
 * Every (batch, kv-head, query block, key tile) becomes one equal-cost LeanTile in one flat
 * list, and each of `grid` workers takes one contiguous run of it, so loads differ by at most
 * one tile whatever the batch, head count or ragged lengths. A run may start or end mid-head;
 * heads that were cut are finished by merging their pieces in tile order. The partition is
 * the {@link LeanSchedule} of `leanSchedule`, executed by the backend.
 *
 * @module
 */
import type { Tensor } from "../tensor/tensor.ts";
import { type LeanSchedule, leanSchedule } from "../schedule/lean_schedule.ts";
import {
  type AttentionOptions,
  MAX_TILE,
  MAX_WORKERS,
  positiveIntOption,
  validateAttention,
} from "./_validate.ts";
import { runSchedule } from "./_run.ts";
import { queryBlocksOf } from "../schedule/limits.ts";
import type { AttentionState } from "./merge.ts";
import type { Backend, LeanGridProblem } from "../backends/backend.ts";
import { calibratedGrid } from "./calibrate_grid.ts";
import { unitRowsOf } from "../schedule/geometry.ts";

/** Options of {@link leanAttention}. */
export interface LeanOptions extends AttentionOptions {
  /** Keys per LeanTile (default 64). */
  tileSize?: number;
  /**
   * Workers the tiles are spread over (default: the grid `calibrateGrid` measured for this
   * adapter if it ran, else the backend's `defaultGrid` — on WebGPU twice the multiprocessors
   * of a table of known GPUs — else twice the CPU's cores; a backend's `leanGrid` may then
   * pick one worker a unit for the shape, where that saves the merge pass of cut units).
   */
  grid?: number;
}

const OP = "leanAttention";

/** The default number of lean workers on a backend. */
export function defaultLeanGrid(backend: Backend): number {
  const measured = calibratedGrid(backend);
  if (measured !== undefined) return measured;
  const own = (backend as { defaultGrid?: number }).defaultGrid;
  if (own !== undefined) return own;
  return backend.name === "cpu" ? backend.parallelism * 2 : backend.parallelism;
}

function plan(q: Tensor, k: Tensor, v: Tensor, opts: LeanOptions) {
  const p = validateAttention(OP, q, k, v, opts);
  const tileSize = positiveIntOption(OP, "tileSize", opts.tileSize, MAX_TILE) ?? 64;
  const given = positiveIntOption(OP, "grid", opts.grid, MAX_WORKERS);
  const problem = {
    batch: p.B,
    kvHeads: p.Hkv,
    kvLens: Array.from(p.kvLens),
    qBlocks: queryBlocksOf(p.Sq),
    tileSize,
  };
  const grid = given ?? shapeGrid(q.backend, problem, p.Sq, p.Hq / p.Hkv, p.D, k.dtype);
  const schedule = leanSchedule({ ...problem, grid });
  return { p, schedule };
}

/** The default grid for one problem: the backend's choice for the shape, else the default. */
function shapeGrid(
  backend: Backend,
  plan: LeanGridProblem["plan"],
  Sq: number,
  group: number,
  D: number,
  kvDtype: LeanGridProblem["kvDtype"],
): number {
  const base = defaultLeanGrid(backend);
  if (!backend.leanGrid) return base;
  const unitRows = unitRowsOf(Sq, group, plan.qBlocks ?? 1);
  const g = backend.leanGrid({ plan, unitRows, D, kvDtype }, base);
  return Number.isSafeInteger(g) && g >= 1 && g <= MAX_WORKERS ? g : base;
}

/** The schedule `leanAttention` would run for this problem (for inspection and tests). */
export function leanAttentionSchedule(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: LeanOptions = {},
): LeanSchedule {
  return plan(q, k, v, opts).schedule;
}

/**
 * LeanAttention. Layouts as PyTorch SDPA: q `[B, Hq, Sq, D]`, k and v `[B, Hkv, N, D]` with
 * `Hq % Hkv == 0`. Returns out `[B, Hq, Sq, D]` in q's dtype, or `{ out, lse }` with
 * `returnLse: true`. Agrees with `flashAttention` to within rounding for every `grid`.
 *
 * @example
 * ```ts
 * import { leanAttention, randn } from "../mod.ts";
 * const q = randn([2, 4, 1, 32], { seed: 1 });
 * const k = randn([2, 4, 500, 32], { seed: 2 });
 * const v = randn([2, 4, 500, 32], { seed: 3 });
 * const { out, lse } = leanAttention(q, k, v, { kvLens: [500, 70], grid: 7, returnLse: true });
 * console.log(out.shape, lse.shape); // [2, 4, 1, 32] [2, 4, 1]
 * ```
 */
export function leanAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: LeanOptions & { returnLse: true },
): AttentionState;
/** leanAttention returning only the output `[B, Hq, Sq, D]`. */
export function leanAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts?: LeanOptions & { returnLse?: false },
): Tensor;
/** leanAttention with `returnLse` known only at run time. */
export function leanAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts?: LeanOptions,
): Tensor | AttentionState;
export function leanAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: LeanOptions = {},
): Tensor | AttentionState {
  const { p, schedule } = plan(q, k, v, opts);
  return runSchedule("lean", q, k, v, p, schedule);
}
