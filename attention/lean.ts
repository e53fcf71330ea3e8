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
import type { QuantizedTensor } from "../ops/quantize.ts";
import { type LeanSchedule, leanSchedule } from "../schedule/lean_schedule.ts";
import type { AttentionPlan } from "../schedule/attention_plan.ts";
import { MAX_TILE, MAX_WORKERS, pieceRuleKey, queryBlocksOf } from "../schedule/limits.ts";
import { unitRowsOf } from "../schedule/geometry.ts";
import type { Backend, LeanGridProblem } from "../backends/backend.ts";
import { type AttentionOptions, positiveIntOption, validateAttention } from "./_validate.ts";
import { runPlan } from "./_run.ts";
import {
  batchInvariantOption,
  checkInvariantPlan,
  invariantScheduleOf,
  pieceRuleOf,
} from "./_invariant.ts";
import { planAttention } from "./plan.ts";
import { calibratedGrid } from "./_grid_store.ts";
import type { AttentionState } from "./merge.ts";
import type { PagedSource } from "./_paged_view.ts";
import type { KVCache } from "./kv_cache.ts";
import type { PagedKV } from "./paged_kv.ts";

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
  /**
   * Cut each sequence's keys only at fixed positions (pieces of 1024 keys, doubled up to
   * 16384 while a sequence would have more than 16; in whole tiles) and merge the pieces left
   * to right, with a kernel configuration that ignores the batch: a row's bits then depend on
   * nothing but its own q, K, V and length — not on the batch, the other sequences, `grid` or
   * the GPU (VARIANTS.md, "Batch invariance"). K/V stored in parts across GPU buffers are a
   * `LimitError` (a paged KV cache has no such limit). Default false.
   */
  batchInvariant?: boolean;
}

const OP = "leanAttention";

/**
 * The default number of lean workers on a backend: the grid `calibrateGrid` measured for its
 * adapter, else the backend's own `defaultGrid`, else its parallelism.
 */
export function defaultLeanGrid(backend: Backend): number {
  return calibratedGrid(backend) ?? backend.defaultGrid ?? backend.parallelism;
}

function plan(
  q: Tensor,
  k: Tensor | PagedSource | QuantizedTensor,
  v: Tensor | QuantizedTensor | LeanOptions | undefined,
  options: LeanOptions | undefined,
) {
  const p = validateAttention<LeanOptions>(OP, q, k, v, options, [
    "tileSize",
    "grid",
    "batchInvariant",
  ]);
  const { opts } = p;
  const tileSize = positiveIntOption(OP, "tileSize", opts.tileSize, MAX_TILE) ?? 64;
  const invariant = batchInvariantOption(OP, opts.batchInvariant);
  const given = positiveIntOption(OP, "grid", opts.grid, MAX_WORKERS);
  const base = given === undefined ? defaultLeanGrid(p.backend) : 0;
  const qBlocks = queryBlocksOf(p.Sq);
  const pieces = invariant ? pieceRuleOf(p.backend, unitRowsOf(p.Sq, p.Hq / p.Hkv, qBlocks)) : null;
  const made = planAttention(q, p.k, p.v, p, {
    op: OP,
    key: `lean|${tileSize}|${given ?? `default ${base}`}|${
      pieces ? `invariant ${pieceRuleKey(pieces)}` : ""
    }`,
    resolve: () => {
      const problem = {
        batch: p.B,
        kvHeads: p.Hkv,
        kvLens: Array.from(p.kvLens),
        qBlocks,
        tileSize,
        ...(pieces ? { pieces } : {}),
      };
      const grid = given ?? shapeGrid(p.backend, problem, base, p.Sq, p.Hq / p.Hkv, p.D, p.k.dtype);
      return {
        algo: "lean",
        schedule: (lens) =>
          invariant
            ? invariantScheduleOf(problem, lens, grid)
            : leanSchedule({ ...problem, ...lens, grid }),
      };
    },
  });
  if (invariant) checkInvariantPlan(OP, made);
  return { p, plan: made };
}

/** The default grid for one problem: the backend's choice for the shape, else `base`. */
function shapeGrid(
  backend: Backend,
  plan: LeanGridProblem["plan"],
  base: number,
  Sq: number,
  group: number,
  D: number,
  kvDtype: LeanGridProblem["kvDtype"],
): number {
  if (!backend.leanGrid) return base;
  const unitRows = unitRowsOf(Sq, group, plan.qBlocks ?? 1);
  const g = backend.leanGrid({ plan, unitRows, D, kvDtype }, base);
  return Number.isSafeInteger(g) && g >= 1 && g <= MAX_WORKERS ? g : base;
}

/** The schedule `leanAttention` would run for this problem (for inspection and tests). */
export function leanAttentionSchedule(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts: LeanOptions = {},
): LeanSchedule {
  return leanAttentionPlan(q, k, v, opts).schedule;
}

/**
 * The plan `leanAttention` runs for this problem: the schedule (with the grid chosen), the
 * K/V parts and the backend's prepared kernel runs. Cached per backend; shared, so read it,
 * do not change it.
 *
 * @example
 * ```ts
 * import { cpu, leanAttentionPlan, randn, renderSchedule } from "../mod.ts";
 * const backend = cpu();
 * const q = randn([1, 4, 1, 32], { seed: 1, backend });
 * const k = randn([1, 2, 500, 32], { seed: 2, backend });
 * const plan = leanAttentionPlan(q, k, k, { grid: 5 });
 * console.log(plan.schedule.workers.length, renderSchedule(plan.schedule).startsWith("<svg")); // 5 true
 * ```
 */
export function leanAttentionPlan(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts: LeanOptions = {},
): AttentionPlan {
  return plan(q, k, v, opts).plan;
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
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts: LeanOptions & { returnLse: true },
): AttentionState;
/** leanAttention returning only the output `[B, Hq, Sq, D]`. */
export function leanAttention(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts?: LeanOptions & { returnLse?: false },
): Tensor;
/** leanAttention with `returnLse` known only at run time. */
export function leanAttention(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts?: LeanOptions,
): Tensor | AttentionState;
/** leanAttention over a paged KV cache or view: lengths from `kv`, `{ out, lse }`. */
export function leanAttention(
  q: Tensor,
  kv: KVCache | PagedKV,
  opts: LeanOptions & { returnLse: true },
): AttentionState;
/** leanAttention over a paged KV cache or view (`kvLens` comes from `kv`). */
export function leanAttention(
  q: Tensor,
  kv: KVCache | PagedKV,
  opts?: LeanOptions & { returnLse?: false },
): Tensor;
/** leanAttention over paged K/V with `returnLse` known only at run time. */
export function leanAttention(
  q: Tensor,
  kv: KVCache | PagedKV,
  opts?: LeanOptions,
): Tensor | AttentionState;
export function leanAttention(
  q: Tensor,
  k: Tensor | PagedSource | QuantizedTensor,
  v?: Tensor | QuantizedTensor | LeanOptions,
  opts?: LeanOptions,
): Tensor | AttentionState {
  const { p, plan: made } = plan(q, k, v, opts);
  return runPlan(q, p.k, p.v, p, made);
}
