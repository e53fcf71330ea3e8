/**
 * How many KV splits flash-decoding uses when asked for `numSplits: "auto"`: the rule of
 * FlashAttention-2's split-KV path. Splitting only pays while the (batch, head, query-block)
 * work items leave workers idle; among split counts it picks the smallest whose last wave is
 * nearly as full as the best one's.
 *
 * @module
 */
import { ArgumentError, show } from "../tensor/errors.ts";
import { MAX_WORKERS } from "./limits.ts";

const OP = "numSplitsHeuristic";

/** Inputs of {@link numSplitsHeuristic}. */
export interface SplitHeuristicInput {
  /** Independent work items before splitting (batch × kv-heads × query blocks). */
  workItems: number;
  /** Workers that run at once (SMs, or the backend's `parallelism`). */
  workers: number;
  /** Key blocks of the longest sequence. */
  keyBlocks: number;
  /** Upper bound on splits (FlashAttention-2 uses 128). */
  maxSplits?: number;
}

/**
 * The split count: 1 when the work items already fill ≥ 80 % of the workers; otherwise the
 * smallest count whose wave efficiency `w / ceil(w)` (`w = items · splits / workers`) is at
 * least 85 % of the best, skipping counts that leave the blocks per split unchanged (they are
 * the previous count in disguise).
 *
 * @example
 * ```ts
 * import { numSplitsHeuristic } from "../mod.ts";
 * // 4 sequences on 108 SMs with 64 key blocks each: split to fill the machine.
 * console.log(numSplitsHeuristic({ workItems: 4, workers: 108, keyBlocks: 64 })); // 22
 * ```
 */
export function numSplitsHeuristic(input: SplitHeuristicInput): number {
  if (typeof input !== "object" || input === null) {
    throw new ArgumentError(`${OP}: expected an input object, got ${show(input)}`);
  }
  const workItems = count("workItems", input.workItems, 0);
  const workers = count("workers", input.workers, 1);
  const keyBlocks = count("keyBlocks", input.keyBlocks, 0);
  const maxSplits = input.maxSplits === undefined ? 128 : count("maxSplits", input.maxSplits, 1);
  if (workItems >= 0.8 * workers || workItems === 0) return 1;
  // At most MAX_WORKERS candidates: the loops stay short whatever the inputs.
  const limit = Math.min(maxSplits, workers, keyBlocks, MAX_WORKERS);
  const perSplit = (s: number) => Math.ceil(keyBlocks / s);
  const eligible = (s: number) => s === 1 || perSplit(s) !== perSplit(s - 1);
  const efficiency = (s: number) => {
    const waves = (workItems * s) / workers;
    return waves / Math.ceil(waves);
  };
  let best = 0;
  for (let s = 1; s <= limit; s++) if (eligible(s)) best = Math.max(best, efficiency(s));
  for (let s = 1; s <= limit; s++) {
    if (eligible(s) && efficiency(s) >= 0.85 * best) return s;
  }
  return 1;
}

/** A non-negative safe integer of at least `min`, else {@link ArgumentError}. */
function count(name: string, v: unknown, min: number): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
    throw new ArgumentError(
      `${OP}: ${name}: expected an integer ≥ ${min}, got ${show(v)}`,
    );
  }
  return v;
}
