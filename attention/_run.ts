/**
 * Running a plan: one call into the backend, the results wrapped as tensors.
 *
 * @module
 */
import type { TensorInfo } from "../backends/backend.ts";
import type { AttentionPlan } from "../schedule/attention_plan.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { AttentionProblem } from "./_validate.ts";
import type { AttentionState } from "./merge.ts";
import { variantInputs } from "./_variant.ts";

const info = (t: Tensor): TensorInfo => ({ id: t.id, shape: t.shape, dtype: t.dtype });

/** Runs `plan` on the backend of `q` and wraps the outputs. */
export function runPlan(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  p: AttentionProblem,
  plan: AttentionPlan,
): Tensor | AttentionState {
  const { backend } = p;
  const extra = variantInputs(p.variant, backend);
  let r: ReturnType<typeof backend.attention>;
  try {
    const scales = p.kScale && p.vScale && { kScale: info(p.kScale), vScale: info(p.vScale) };
    const inputs = p.pages || scales
      ? { ...extra.inputs, ...p.pages && { pages: p.pages }, ...scales }
      : extra.inputs;
    r = backend.attention(info(q), info(k), info(v), plan, inputs);
  } finally {
    extra.free();
  }
  const out = new Tensor(backend, r.out, [p.B, p.Hq, p.Sq, p.D], q.dtype);
  if (!p.returnLse) {
    backend.release(r.lse);
    return out;
  }
  return { out, lse: new Tensor(backend, r.lse, [p.B, p.Hq, p.Sq], "float32") };
}
