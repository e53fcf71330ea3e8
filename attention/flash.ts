/**
 * `flashAttention`: FlashAttention-2, and FlashDecoding when the key axis is split.
 *
 * One worker per (batch, kv-head, query block) walks its keys in blocks of `blockN`, folding
 * each block into an online-softmax state. With `numSplits > 1` every unit's key blocks are
 * cut into that many equal chunks run in parallel and merged afterwards in chunk order
 * (flash-decoding); `"auto"` picks the count with FlashAttention-2's heuristic. The work
 * partition is a {@link LeanSchedule} from `splitSchedule`, executed by the backend.
 *
 * @module
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { QuantizedTensor } from "../ops/quantize.ts";
import { ArgumentError } from "../tensor/errors.ts";
import { type LeanSchedule, splitSchedule } from "../schedule/lean_schedule.ts";
import type { AttentionPlan } from "../schedule/attention_plan.ts";
import { MAX_TILE, MAX_WORKERS, pieceRuleKey, queryBlocksOf } from "../schedule/limits.ts";
import { numSplitsHeuristic } from "../schedule/split_heuristic.ts";
import {
  type AttentionOptions,
  type AttentionProblem,
  positiveIntOption,
  validateAttention,
} from "./_validate.ts";
import { runPlan } from "./_run.ts";
import {
  batchInvariantOption,
  checkInvariantPlan,
  invariantScheduleOf,
  pieceRuleOf,
} from "./_invariant.ts";
import { planAttention, type Planner } from "./plan.ts";
import { unitRowsOf } from "../schedule/geometry.ts";
import type { AttentionState } from "./merge.ts";
import type { PagedSource } from "./_paged_view.ts";
import type { KVCache } from "./kv_cache.ts";
import type { PagedKV } from "./paged_kv.ts";

/** Options of {@link flashAttention}. */
export interface FlashOptions extends AttentionOptions {
  /** Keys per block (default 64). */
  blockN?: number;
  /**
   * Chunks the key axis of every (batch, head) is cut into (default 1: FlashAttention-2);
   * `"auto"` uses FlashAttention-2's split-KV heuristic against the backend's parallelism.
   */
  numSplits?: number | "auto";
  /**
   * Cut each sequence's keys only at fixed positions (as `LeanOptions.batchInvariant`, in
   * whole blocks), one worker a piece, merged left to right: a row's bits then depend on nothing but its own
   * inputs (VARIANTS.md, "Batch invariance"; see `LeanOptions.batchInvariant`). Not with
   * `numSplits`. Default false.
   */
  batchInvariant?: boolean;
}

const OP = "flashAttention";

/** The schedule `flashAttention` would run for this problem (for inspection and tests). */
export function flashSchedule(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts: FlashOptions = {},
): LeanSchedule {
  return flashAttentionPlan(q, k, v, opts).schedule;
}

/**
 * The plan `flashAttention` runs for this problem: the schedule, the K/V parts and the
 * backend's prepared kernel runs. Cached per backend; shared, so read it, do not change it.
 */
export function flashAttentionPlan(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts: FlashOptions = {},
): AttentionPlan {
  return plan(q, k, v, opts).plan;
}

/** Throws unless `numSplits` chunks of `units` units make at most `MAX_WORKERS` workers. */
function checkWorkers(numSplits: number, units: number): void {
  const workers = units * numSplits;
  if (numSplits > 1 && workers > MAX_WORKERS) {
    throw new ArgumentError(
      `${OP}: numSplits ${numSplits} × ${units} units would make ${workers} workers, ` +
        `more than ${MAX_WORKERS}`,
    );
  }
}

/** The most keys one row block can see: the longest length, or less under a window. */
function longestVisible(p: AttentionProblem): number {
  const { windowLeft: l, windowRight: r } = p.variant.variant;
  const longest = p.kvLens.reduce((a, n) => Math.max(a, n), 0);
  return Math.min(longest, l + r + p.Sq);
}

function plan(
  q: Tensor,
  k: Tensor | PagedSource | QuantizedTensor,
  v: Tensor | QuantizedTensor | FlashOptions | undefined,
  options: FlashOptions | undefined,
) {
  const p = validateAttention<FlashOptions>(OP, q, k, v, options, [
    "blockN",
    "numSplits",
    "batchInvariant",
  ]);
  const { opts } = p;
  const blockN = positiveIntOption(OP, "blockN", opts.blockN, MAX_TILE) ?? 64;
  const qBlocks = queryBlocksOf(p.Sq);
  if (batchInvariantOption(OP, opts.batchInvariant)) return invariantPlan(q, p, blockN, qBlocks);
  let numSplits: number | "auto";
  if (opts.numSplits === "auto") {
    numSplits = "auto";
  } else if (typeof opts.numSplits === "string") {
    throw new ArgumentError(
      `${OP}: numSplits must be a positive integer or "auto", got ${
        JSON.stringify(opts.numSplits)
      }`,
    );
  } else {
    numSplits = positiveIntOption(OP, "numSplits", opts.numSplits, MAX_WORKERS) ?? 1;
    checkWorkers(numSplits, p.B * p.Hkv * qBlocks);
  }
  const planner: Planner = {
    op: OP,
    key: `flash|${blockN}|${numSplits}|${p.backend.parallelism}`,
    resolve: () => {
      const splits = numSplits === "auto"
        ? numSplitsHeuristic({
          workItems: p.B * p.Hkv * qBlocks,
          workers: p.backend.parallelism,
          keyBlocks: Math.max(1, Math.ceil(longestVisible(p) / blockN)),
        })
        : numSplits;
      checkWorkers(splits, p.B * p.Hkv * qBlocks);
      return {
        algo: splits === 1 ? "flash" : "flash-decoding",
        schedule: (lens) =>
          splitSchedule({
            ...lens,
            batch: p.B,
            kvHeads: p.Hkv,
            qBlocks,
            tileSize: blockN,
            numSplits: splits,
          }),
      };
    },
  };
  return { p, plan: planAttention(q, p.k, p.v, p, planner) };
}

/** The batch-invariant plan: fixed pieces of every unit, one worker a piece. */
function invariantPlan(
  q: Tensor,
  p: AttentionProblem & { opts: Partial<FlashOptions> },
  blockN: number,
  qBlocks: number,
) {
  if (p.opts.numSplits !== undefined) {
    throw new ArgumentError(
      `${OP}: batchInvariant fixes where keys are cut, so numSplits cannot be given (got ${
        JSON.stringify(p.opts.numSplits)
      })`,
    );
  }
  const pieces = pieceRuleOf(p.backend, unitRowsOf(p.Sq, p.Hq / p.Hkv, qBlocks));
  const problem = { batch: p.B, kvHeads: p.Hkv, qBlocks, tileSize: blockN, pieces };
  const made = planAttention(q, p.k, p.v, p, {
    op: OP,
    key: `flash|${blockN}|invariant ${pieceRuleKey(pieces)}`,
    resolve: () => ({
      algo: "flash-decoding",
      schedule: (lens) => invariantScheduleOf(problem, lens),
    }),
  });
  checkInvariantPlan(OP, made);
  return { p, plan: made };
}

/**
 * FlashAttention-2 (or FlashDecoding with `numSplits`). Layouts as PyTorch SDPA: q
 * `[B, Hq, Sq, D]`, k and v `[B, Hkv, N, D]` with `Hq % Hkv == 0`. Returns out
 * `[B, Hq, Sq, D]` in q's dtype, or `{ out, lse }` with `returnLse: true`.
 *
 * @example
 * ```ts
 * import { flashAttention, randn } from "../mod.ts";
 * const q = randn([1, 4, 1, 32], { seed: 1 });
 * const k = randn([1, 2, 300, 32], { seed: 2 });
 * const v = randn([1, 2, 300, 32], { seed: 3 });
 * const out = flashAttention(q, k, v, { numSplits: "auto" });
 * console.log(out.shape); // [1, 4, 1, 32]
 * ```
 */
export function flashAttention(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts: FlashOptions & { returnLse: true },
): AttentionState;
/** flashAttention returning only the output `[B, Hq, Sq, D]`. */
export function flashAttention(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts?: FlashOptions & { returnLse?: false },
): Tensor;
/** flashAttention with `returnLse` known only at run time. */
export function flashAttention(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts?: FlashOptions,
): Tensor | AttentionState;
/** flashAttention over a paged KV cache or view: lengths from `kv`, `{ out, lse }`. */
export function flashAttention(
  q: Tensor,
  kv: KVCache | PagedKV,
  opts: FlashOptions & { returnLse: true },
): AttentionState;
/** flashAttention over a paged KV cache or view (`kvLens` comes from `kv`). */
export function flashAttention(
  q: Tensor,
  kv: KVCache | PagedKV,
  opts?: FlashOptions & { returnLse?: false },
): Tensor;
/** flashAttention over paged K/V with `returnLse` known only at run time. */
export function flashAttention(
  q: Tensor,
  kv: KVCache | PagedKV,
  opts?: FlashOptions,
): Tensor | AttentionState;
export function flashAttention(
  q: Tensor,
  k: Tensor | PagedSource | QuantizedTensor,
  v?: Tensor | QuantizedTensor | FlashOptions,
  opts?: FlashOptions,
): Tensor | AttentionState {
  const { p, plan: made } = plan(q, k, v, opts);
  return runPlan(q, p.k, p.v, p, made);
}
