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
import { ArgumentError } from "../tensor/errors.ts";
import { splitSchedule } from "../schedule/lean_schedule.ts";
import type { LeanSchedule } from "../schedule/lean_schedule.ts";
import {
  type AttentionOptions,
  MAX_TILE,
  MAX_WORKERS,
  positiveIntOption,
  validateAttention,
} from "./_validate.ts";
import { runSchedule } from "./_run.ts";
import { queryBlocksOf } from "../schedule/limits.ts";
import { numSplitsHeuristic } from "../schedule/split_heuristic.ts";
import type { AttentionState } from "./merge.ts";

/** Options of {@link flashAttention}. */
export interface FlashOptions extends AttentionOptions {
  /** Keys per block (default 64). */
  blockN?: number;
  /**
   * Chunks the key axis of every (batch, head) is cut into (default 1: FlashAttention-2);
   * `"auto"` uses FlashAttention-2's split-KV heuristic against the backend's parallelism.
   */
  numSplits?: number | "auto";
}

const OP = "flashAttention";

/** The schedule `flashAttention` would run for this problem (for inspection and tests). */
export function flashSchedule(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: FlashOptions = {},
): LeanSchedule {
  return plan(q, k, v, opts).schedule;
}

function plan(q: Tensor, k: Tensor, v: Tensor, opts: FlashOptions) {
  const p = validateAttention(OP, q, k, v, opts);
  const blockN = positiveIntOption(OP, "blockN", opts.blockN, MAX_TILE) ?? 64;
  let numSplits: number;
  const qBlocks = queryBlocksOf(p.Sq);
  const lens = Array.from(p.kvLens);
  if (opts.numSplits === "auto") {
    numSplits = numSplitsHeuristic({
      workItems: p.B * p.Hkv * qBlocks,
      workers: q.backend.parallelism,
      keyBlocks: Math.max(1, Math.ceil(Math.max(...lens) / blockN)),
    });
  } else if (typeof opts.numSplits === "string") {
    throw new ArgumentError(
      `${OP}: numSplits must be a positive integer or "auto", got ${
        JSON.stringify(opts.numSplits)
      }`,
    );
  } else {
    numSplits = positiveIntOption(OP, "numSplits", opts.numSplits, MAX_WORKERS) ?? 1;
  }
  const workers = p.B * p.Hkv * qBlocks * numSplits;
  if (numSplits > 1 && workers > MAX_WORKERS) {
    throw new ArgumentError(
      `${OP}: numSplits ${numSplits} × ${p.B * p.Hkv * qBlocks} units would make ${workers} ` +
        `workers, more than ${MAX_WORKERS}`,
    );
  }
  const schedule = splitSchedule({
    batch: p.B,
    kvHeads: p.Hkv,
    kvLens: lens,
    qBlocks,
    tileSize: blockN,
    numSplits,
  });
  return { p, schedule, algo: numSplits === 1 ? "flash" as const : "flash-decoding" as const };
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
  k: Tensor,
  v: Tensor,
  opts: FlashOptions & { returnLse: true },
): AttentionState;
/** flashAttention returning only the output `[B, Hq, Sq, D]`. */
export function flashAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts?: FlashOptions & { returnLse?: false },
): Tensor;
/** flashAttention with `returnLse` known only at run time. */
export function flashAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts?: FlashOptions,
): Tensor | AttentionState;
export function flashAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: FlashOptions = {},
): Tensor | AttentionState {
  const { p, schedule, algo } = plan(q, k, v, opts);
  return runSchedule(algo, q, k, v, p, schedule);
}
