/**
 * Executing an attention plan whose K/V are stored in parts (a backend's `storageParts`):
 * one kernel run per planned part, the states merged in key order on the backend (no
 * readback). Shared by every backend that stores tensors in parts.
 *
 * @module
 */
import type { AttentionPlan, AttentionRun } from "../schedule/attention_plan.ts";
import type { Backend, DataId, TensorInfo } from "./backend.ts";

/** One kernel run over whole tensors, as the backend executes it. */
export type RunKernel = (
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  run: AttentionRun,
) => { out: DataId; lse: DataId };

/** Runs `plan` (whose `parts` are set) over the parts of k and v and merges the states. */
export function attentionInParts(
  backend: Backend,
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  plan: AttentionPlan,
  runKernel: RunKernel,
): { out: DataId; lse: DataId } {
  const kParts = backend.storageParts!(k)!;
  const vParts = backend.storageParts!(v)!;
  const [B, Hq, Sq, D] = q.shape;
  const Hkv = k.shape[1];
  // Partial states are float32 (f16 is storage only): with float16 q, the parts run on a
  // float32 copy of q, merge in float32, and only the merged output is rounded.
  const wide = plan.runDtype !== q.dtype;
  const outShape = [B, Hq, Sq, D];
  const partialType = wide ? "float32" : q.dtype;
  const states: { out: DataId; lse: DataId }[] = [];
  let qWide: DataId | null = null;
  try {
    if (wide) qWide = backend.cast(q, "float32");
    const qi: TensorInfo = qWide ? { id: qWide, shape: q.shape, dtype: "float32" } : q;
    const kvInfo = (id: DataId, c: number): TensorInfo => ({
      id,
      shape: [B, Hkv, kParts[c].n1 - kParts[c].n0, D],
      dtype: k.dtype,
    });
    for (const run of plan.runs) {
      const c = run.part!;
      states.push(runKernel(qi, kvInfo(kParts[c].id, c), kvInfo(vParts[c].id, c), run));
    }
    if (states.length === 1) return states.pop()!;
    const merged = backend.mergeStates(
      states.map((s) => ({ id: s.out, shape: outShape, dtype: partialType })),
      states.map((s) => ({ id: s.lse, shape: outShape.slice(0, 3), dtype: "float32" })),
    );
    if (!wide) return merged;
    try {
      return {
        out: backend.cast({ id: merged.out, shape: outShape, dtype: "float32" }, q.dtype),
        lse: merged.lse,
      };
    } catch (e) {
      backend.release(merged.lse);
      throw e;
    } finally {
      backend.release(merged.out);
    }
  } finally {
    if (qWide) backend.release(qWide);
    for (const s of states) {
      backend.release(s.out);
      backend.release(s.lse);
    }
  }
}
