/**
 * The body every schedule-driven attention op shares: resolve the problem, build the
 * schedule, call the backend once, wrap the results.
 */
import type { Backend } from "../backends/backend.ts";
import type { LeanSchedule } from "./lean_schedule.ts";
import type { AttentionProblem } from "./_validate.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { AttentionState } from "./merge.ts";

/**
 * Query rows per query block. One unit covers a GQA group's heads × this many query rows,
 * like FlashAttention-2's `kBlockM`; decode (Sq = 1) gives one block per (batch, kv-head).
 */
export const BLOCK_M = 64;

/** Query blocks of a problem. */
export function queryBlocks(p: AttentionProblem): number {
  return Math.ceil(p.Sq / BLOCK_M);
}

/** Runs `schedule` on the backend of `q` and wraps the outputs. */
export function runSchedule(
  algo: "flash" | "flash-decoding" | "lean",
  q: Tensor,
  k: Tensor,
  v: Tensor,
  p: AttentionProblem,
  schedule: LeanSchedule,
): Tensor | AttentionState {
  const backend: Backend = q.backend;
  const r = backend.attention(
    { id: q.id, shape: q.shape, dtype: q.dtype },
    { id: k.id, shape: k.shape, dtype: k.dtype },
    { id: v.id, shape: v.shape, dtype: v.dtype },
    { algo, scale: p.scale, causal: p.causal, kvLens: p.kvLens, schedule },
  );
  const out = new Tensor(backend, r.out, [p.B, p.Hq, p.Sq, p.D], q.dtype);
  if (!p.returnLse) {
    backend.release(r.lse);
    return out;
  }
  return { out, lse: new Tensor(backend, r.lse, [p.B, p.Hq, p.Sq], "float32") };
}
