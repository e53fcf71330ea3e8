/**
 * Test helpers for quantized K/V at the backend level: host quantization of `[B, H, N, D]`
 * values in either format at either scale granularity (the combinations `la.quantize` does
 * not make: int8 per head, float8e4m3 per token; and per-token rows of pages), and the turn
 * of a float plan into the quantized plan over K/V of the same shape.
 */
import type { Backend } from "../backends/backend.ts";
import type { AttentionPlan, AttentionRun } from "../schedule/attention_plan.ts";
import { decodeE4M3, E4M3_MAX, encodeE4M3 } from "../tensor/float8.ts";

/** Host-quantized values: what to upload (codes as the tensor's values) and the reference. */
export interface HostQuant {
  /** Values to create the int8 / float8e4m3 tensor from (each exactly representable). */
  values: Float32Array;
  /** float32 scales, `[B, H, N]` ("token") or `[B, H]` ("head"). */
  scale: Float32Array;
  /** `scale · stored value` in float64 (NaN where a scale is). */
  deq: Float64Array;
}

/**
 * Quantizes `x` `[B, H, N, D]` symmetrically: scale = max |x| / top over each token's D
 * values ("token") or over each head's N · D ("head"); a block with NaN gets a NaN scale and
 * zero codes (a kernel that reads it poisons its row).
 */
export function hostQuantize(
  x: ArrayLike<number>,
  shape: readonly number[],
  fmt: "int8" | "float8e4m3",
  sc: "token" | "head",
): HostQuant {
  const [B, H, N, D] = shape;
  const block = sc === "token" ? D : N * D;
  const blocks = (B * H * N * D) / block;
  const top = fmt === "int8" ? 127 : E4M3_MAX;
  const values = new Float32Array(B * H * N * D);
  const scale = new Float32Array(blocks);
  const deq = new Float64Array(values.length);
  for (let b = 0; b < blocks; b++) {
    let m = 0;
    for (let i = b * block; i < (b + 1) * block; i++) m = Math.max(m, Math.abs(x[i]));
    scale[b] = Number.isNaN(m) ? NaN : m / top;
    const s = scale[b];
    for (let i = b * block; i < (b + 1) * block; i++) {
      const t = s > 0 ? x[i] / s : 0;
      const code = fmt === "int8"
        ? Math.max(-127, Math.min(127, Math.round(t)))
        : decodeE4M3(encodeE4M3(t));
      values[i] = Number.isNaN(s) ? 0 : code;
      deq[i] = s * values[i];
    }
  }
  return { values, scale, deq };
}

/**
 * The quantized twin of a single-run plan (contiguous or paged) over K/V of the same shape:
 * `kvDtype`/`kvScales` set and its run prepared again by the backend.
 */
export function quantPlan(
  backend: Backend,
  plan: AttentionPlan,
  fmt: "int8" | "float8e4m3",
  sc: "token" | "head",
): AttentionPlan {
  if (plan.runs.length !== 1 || plan.parts) throw new Error("quantPlan: needs a single-run plan");
  const run: AttentionRun = { ...plan.runs[0], prepared: undefined };
  const qp: AttentionPlan = { ...plan, kvDtype: fmt, kvScales: sc, runs: [run] };
  if (backend.prepareAttention) run.prepared = backend.prepareAttention(qp, run);
  return qp;
}
