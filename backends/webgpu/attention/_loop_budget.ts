/**
 * Attention launches within a software adapter's loop limit. Mesa's llvmpipe (lavapipe)
 * stops every loop of a shader invocation once 65,535 iterations have run in total (all loops
 * of the invocation together; `LP_MAX_TGSI_LOOP_ITERATIONS`), silently: a worker walking more
 * segments or keys than that leaves the rest of its output unwritten. On a software adapter
 * the schedule is cut (`schedule/loop_budget.ts`) so that every worker's estimated
 * iterations stay within half of the limit.
 *
 * The estimate is one for all three kernels, the largest of what each was measured to cost on
 * lavapipe (llvmpipe, LLVM 15, 256-bit; 2026-12-07; the first row or key whose output stayed
 * unwritten, with grid 1 over 16,384 short units and flash over 2²⁰ keys): per segment, the
 * workgroup-memory kernel ~198 (D 16, one row), the subgroup kernel ~120 up to R·D = 512 and
 * then ≈ R·D / 4.5 (910 at 64 rows × D 64, 1,820 at 64 × 128), the generic kernel 22–46; per
 * key, the generic kernel 0.67–1.34 for each block of 64 rows (D 16–256), the others under
 * 1/16.
 *
 * @module
 */
import type { AttentionParams, TensorInfo } from "../../backend.ts";
import type { GpuContext } from "../context.ts";
import { isSoftwareAdapter } from "../_gpus.ts";
import { attentionGeometry } from "../../../schedule/geometry.ts";
import { type LoopCost, withinLoopBudget } from "../../../schedule/loop_budget.ts";
import { GENERIC_WG } from "./generic_kernel.ts";

/** llvmpipe's loop iterations per shader invocation (`LP_MAX_TGSI_LOOP_ITERATIONS`). */
export const SOFTWARE_LOOP_LIMIT = 65535;

/** The estimated loop cost of a worker's run for q of `qShape`, K/V of `kShape`. */
export function loopCostOf(
  qShape: TensorInfo["shape"],
  kShape: TensorInfo["shape"],
  params: AttentionParams,
): LoopCost {
  const { D, unitRows } = attentionGeometry(qShape, kShape, params.schedule);
  return {
    perSegment: 200 + (unitRows * D) / 4,
    // The generic kernel walks the keys once per block of GENERIC_WG rows; past D = 256 its
    // staging loop grows with D (see generic_kernel.ts).
    perKey: 1.5 * Math.ceil(unitRows / GENERIC_WG) * Math.max(1, D / 256),
    budget: SOFTWARE_LOOP_LIMIT >> 1,
  };
}

/**
 * The params with the schedule cut to the loop budget where the adapter is a software one;
 * else (and where every worker fits) the params themselves.
 */
export function withinAdapterLoops(
  ctx: GpuContext,
  q: Pick<TensorInfo, "shape">,
  k: Pick<TensorInfo, "shape">,
  params: AttentionParams,
): AttentionParams {
  if (!isSoftwareAdapter(ctx.description) || params.schedule.workers.length === 0) return params;
  const schedule = withinLoopBudget(params.schedule, loopCostOf(q.shape, k.shape, params));
  return schedule === params.schedule ? params : { ...params, schedule };
}
