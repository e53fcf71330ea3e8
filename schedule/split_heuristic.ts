/**
 * How many KV splits flash-decoding uses when asked for `numSplits: "auto"`: the rule of
 * FlashAttention-2's split-KV path. Splitting only pays while the (batch, head, query-block)
 * work items leave workers idle; among split counts it picks the smallest whose last wave is
 * nearly as full as the best one's.
 *
 * @module
 */

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
  const { workItems, workers, keyBlocks } = input;
  if (workItems >= 0.8 * workers) return 1;
  const limit = Math.min(input.maxSplits ?? 128, workers, keyBlocks);
  const perSplit = (s: number) => Math.ceil(keyBlocks / s);
  const eligible = (s: number) => s === 1 || perSplit(s) !== perSplit(s - 1);
  const eff: number[] = [];
  let best = 0;
  for (let s = 1; s <= limit; s++) {
    if (!eligible(s)) {
      eff.push(0);
      continue;
    }
    const waves = (workItems * s) / workers;
    const e = waves / Math.ceil(waves);
    eff.push(e);
    if (e > best) best = e;
  }
  for (let s = 1; s <= limit; s++) {
    if (eligible(s) && eff[s - 1] >= 0.85 * best) return s;
  }
  return 1;
}
