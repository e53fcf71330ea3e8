/**
 * Executing an attention plan whose K/V are stored in parts (a backend's `storageParts`):
 * one kernel run per planned part, the states merged in key order on the backend (no
 * readback). Shared by every backend that stores tensors in parts.
 *
 * Sinks (VARIANTS.md) are one extra state per row merged exactly once: the part runs leave
 * them out ({@link kernelRun}) and the sink state is merged after the parts' states.
 *
 * @module
 */
import type { AttentionPlan, AttentionRun } from "../schedule/attention_plan.ts";
import type { AttentionInputs, Backend, DataId, TensorInfo } from "./backend.ts";

/** One kernel run over whole tensors, as the backend executes it. */
export type RunKernel = (
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  run: AttentionRun,
) => { out: DataId; lse: DataId };

/**
 * The run a backend's kernel executes for `run` of `plan`: the run itself, except that where
 * several runs merge, none of them adds the sinks (added once after the merge).
 */
export function kernelRun(plan: AttentionPlan, run: AttentionRun): AttentionRun {
  if (plan.runs.length < 2 || !run.variant.sinks) return run;
  return { ...run, variant: { ...run.variant, sinks: false } };
}

/**
 * Runs `plan` (whose `parts` are set) over the parts of k and v and merges the states (and,
 * with sinks, the sink state once after them).
 */
export function attentionInParts(
  backend: Backend,
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  plan: AttentionPlan,
  runKernel: RunKernel,
  inputs: AttentionInputs = {},
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
    // The call's sinks (the plan's variant; part runs leave them out): merged once, last.
    const sinks = (plan.variant ?? plan.runs[0].variant).sinks;
    if (states.length === 1 && !sinks) return states.pop()!;
    let merged = states.length === 1 ? states.pop()! : backend.mergeStates(
      states.map((s) => ({ id: s.out, shape: outShape, dtype: partialType })),
      states.map((s) => ({ id: s.lse, shape: outShape.slice(0, 3), dtype: "float32" })),
    );
    if (sinks) {
      const prev = merged;
      try {
        merged = mergeSink(backend, prev, inputs.sinks!, outShape, partialType);
      } finally {
        backend.release(prev.out);
        backend.release(prev.lse);
      }
    }
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

/**
 * Merges the sink state `(z_h, 1, 0)` into normalised states `(out, lse)`: `lse' =
 * logaddexp(lse, z_h)`, `out' = out · exp(lse − lse')` (a row with no keys, lse = −∞, gets out
 * 0 and lse z_h). Built from backend primitives, so every backend that stores parts has it.
 */
function mergeSink(
  backend: Backend,
  s: { out: DataId; lse: DataId },
  sinks: TensorInfo,
  outShape: readonly number[],
  outDtype: TensorInfo["dtype"],
): { out: DataId; lse: DataId } {
  const rows = outShape.slice(0, 3);
  const f32 = "float32" as const;
  const t = (id: DataId, shape: readonly number[] = rows): TensorInfo => ({
    id,
    shape,
    dtype: f32,
  });
  const z: TensorInfo = { id: sinks.id, shape: [1, outShape[1], 1], dtype: f32 };
  const lse = t(s.lse);
  const temps: DataId[] = [];
  const keep = (id: DataId) => (temps.push(id), t(id));
  try {
    const m = keep(backend.binary("max", lse, z, rows, f32));
    const a = keep(backend.unary("exp", keep(backend.binary("sub", lse, m, rows, f32))));
    const b = keep(backend.unary("exp", keep(backend.binary("sub", z, m, rows, f32))));
    const ln = keep(backend.unary("log", keep(backend.binary("add", a, b, rows, f32))));
    const lse2 = backend.binary("add", m, ln, rows, f32);
    try {
      const d = keep(backend.binary("sub", lse, t(lse2), rows, f32));
      const f = keep(backend.unary("exp", d));
      const out = backend.binary(
        "mul",
        { id: s.out, shape: outShape, dtype: outDtype },
        { id: f.id, shape: [...rows, 1], dtype: f32 },
        outShape,
        outDtype,
      );
      return { out, lse: lse2 };
    } catch (e) {
      backend.release(lse2);
      throw e;
    }
  } finally {
    for (const id of temps) backend.release(id);
  }
}
