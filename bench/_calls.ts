/**
 * The calls the benchmark times for this library's own algorithms (and their variants), what
 * their schedules look like, the wall-time loop, and the float16/float32 check tolerance.
 *
 * @module
 */
import type { Case, OwnAlgo } from "./_sweep.ts";
import type { Row } from "./_results.ts";
import type { Call } from "./_timing.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { flashAttention, flashSchedule } from "../attention/flash.ts";
import { leanAttention, leanAttentionSchedule, type LeanOptions } from "../attention/lean.ts";
import { naiveAttention } from "../attention/naive.ts";
import { VARIANT_ALGOS, type VariantAlgo, variantOptions } from "./_variants.ts";

/** Whether `a` is a variant row's algo. */
export const isVariant = (a: string): a is VariantAlgo =>
  (VARIANT_ALGOS as readonly string[]).includes(a);

export function callOf(
  algo: OwnAlgo | VariantAlgo,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  c: Case,
): Call {
  const kvLens = c.kvLens;
  if (isVariant(algo)) {
    const opts = { kvLens, ...variantOptions(algo, c) } as LeanOptions & { returnLse?: false };
    return (qq = q) => leanAttention(qq, k, v, opts);
  }
  switch (algo) {
    case "flash":
      return (qq = q) => flashAttention(qq, k, v, { numSplits: 1, kvLens });
    case "flash-decoding":
      return (qq = q) => flashAttention(qq, k, v, { numSplits: "auto", kvLens });
    case "lean":
      return (qq = q) => leanAttention(qq, k, v, { kvLens });
    case "naive":
      return (qq = q) => naiveAttention(qq, k, v, { kvLens });
  }
}

/** Workers (and cut units) of the schedule an algorithm runs, for reading the timings. */
export function scheduleInfo(
  algo: OwnAlgo | VariantAlgo,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  c: Case,
): Partial<Row> {
  if (algo === "naive") return {};
  const kvLens = c.kvLens;
  const s = isVariant(algo)
    ? leanAttentionSchedule(q, k, v, { kvLens, ...variantOptions(algo, c) } as LeanOptions)
    : algo === "lean"
    ? leanAttentionSchedule(q, k, v, { kvLens })
    : flashSchedule(q, k, v, { kvLens, numSplits: algo === "flash" ? 1 : "auto" });
  return { workers: s.workers.length, cutUnits: s.cuts.length };
}

/** Wall time per call of a loop of `calls` with one readback at the end. */
export async function wallTime(call: Call, calls: number): Promise<number> {
  await call().data();
  const t0 = performance.now();
  let last: Tensor | null = null;
  for (let i = 0; i < calls; i++) {
    last?.dispose();
    last = call();
  }
  await last!.data();
  const ms = (performance.now() - t0) / calls;
  last!.dispose();
  return ms;
}

/** Calls in the wall loop: enough to hide the ~10 ms readback latency, within a time budget. */
export function wallCallsFor(gpuMs: number | null, smoke: boolean): number {
  if (smoke) return 3;
  const ms = gpuMs ?? 1;
  if (ms > 5) return Math.max(5, Math.ceil(160 / ms));
  return Math.max(20, Math.min(200, Math.ceil(80 / Math.max(ms, 0.01))));
}

/** Tolerance of the check against flash: output rounding of the dtype, relative to max|ref|. */
export function tolerance(dtype: Case["dtype"], refMax: number): number {
  return (dtype === "float16" ? 1e-2 : 1e-4) * Math.max(refMax, 1e-3);
}
