/**
 * The body every schedule-driven attention op shares: resolve the problem, build the
 * schedule, call the backend once, wrap the results.
 *
 * K/V too large for one device binding arrive stored across several buffers (a backend's
 * `storageParts`), each holding a range `[n0, n1)` of the key axis. Attention over the union
 * of disjoint key sets is the merge of the attention over each set, so the op runs once per
 * part — the same algorithm, its schedule recomputed here for the part's lengths
 * `clamp(kvLens[b] − n0, 0, n1 − n0)` — and merges the parts' states in key order on the
 * backend (no readback).
 */
import type { Backend, DataId, StoragePart, TensorInfo } from "../backends/backend.ts";
import { type LeanSchedule, leanSchedule, splitSchedule } from "../schedule/lean_schedule.ts";
import type { AttentionProblem } from "./_validate.ts";
import { Tensor } from "../tensor/tensor.ts";
import { LimitError } from "../tensor/errors.ts";
import { fmt } from "../tensor/shape.ts";
import type { AttentionState } from "./merge.ts";

const info = (t: Tensor): TensorInfo => ({ id: t.id, shape: t.shape, dtype: t.dtype });

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
  const parts = kvParts(algo, backend, q, k, v);
  const r = parts
    ? runParts(algo, backend, q, k, p, schedule, parts)
    : backend.attention(info(q), info(k), info(v), {
      algo,
      scale: p.scale,
      causal: p.causal,
      kvLens: p.kvLens,
      schedule,
    });
  const out = new Tensor(backend, r.out, [p.B, p.Hq, p.Sq, p.D], q.dtype);
  if (!p.returnLse) {
    backend.release(r.lse);
    return out;
  }
  return { out, lse: new Tensor(backend, r.lse, [p.B, p.Hq, p.Sq], "float32") };
}

/** The matching parts of k and v when the backend stored them in parts, else null. */
function kvParts(
  algo: string,
  backend: Backend,
  q: Tensor,
  k: Tensor,
  v: Tensor,
): { k: readonly StoragePart[]; v: readonly StoragePart[] } | null {
  if (!backend.storageParts) return null;
  const op = algo === "lean" ? "leanAttention" : "flashAttention";
  if (backend.storageParts(info(q))) {
    throw new LimitError(
      `${op}: q ${fmt(q.shape)} is too large for one buffer binding and was stored across ` +
        `several buffers; only k and v may be stored in parts (run fewer queries per call)`,
    );
  }
  const kp = backend.storageParts(info(k));
  const vp = backend.storageParts(info(v));
  if (!kp && !vp) return null;
  const same = kp && vp && kp.length === vp.length &&
    kp.every((a, i) => a.n0 === vp[i].n0 && a.n1 === vp[i].n1);
  if (!same) {
    const desc = (s: readonly StoragePart[] | null) =>
      s ? `in parts from keys [${s.map((x) => x.n0).join(", ")}]` : "stored whole";
    throw new LimitError(
      `${op}: k is ${desc(kp)} and v is ${desc(vp)} along the key axis; k and v over one ` +
        `buffer binding must be cut into the same parts (create both with the same shape and dtype)`,
    );
  }
  return { k: kp!, v: vp! };
}

/** The schedule of the same algorithm and knobs for other key lengths. */
function reschedule(s: LeanSchedule, kvLens: number[]): LeanSchedule {
  const { batch, kvHeads, qBlocks, tileSize, grid } = s.plan;
  if (s.kind === "lean") {
    return leanSchedule({ batch, kvHeads, qBlocks, tileSize, grid, kvLens });
  }
  const numSplits = s.workers.length / s.units.length;
  return splitSchedule({ batch, kvHeads, qBlocks, tileSize, kvLens, numSplits });
}

function runParts(
  algo: "flash" | "flash-decoding" | "lean",
  backend: Backend,
  q: Tensor,
  k: Tensor,
  p: AttentionProblem,
  schedule: LeanSchedule,
  parts: { k: readonly StoragePart[]; v: readonly StoragePart[] },
): { out: DataId; lse: DataId } {
  const op = algo === "lean" ? "leanAttention" : "flashAttention";
  // Plan every call first, so that a refusal dispatches nothing.
  //
  // The causal mask is bottom-right aligned to each part's own length, which is right for
  // the part holding kvLens[b] but would hide the tail of a part wholly before it. Such
  // parts run unmasked instead (a batch mixing both kinds in one part runs it twice, the
  // other entries' lengths zeroed: each state is then the identity where it does not
  // apply). Unmasked is right only if every query row sees the whole part, i.e. the part
  // ends at least Sq − 1 keys before kvLens[b].
  const runs: { c: number; lens: number[]; causal: boolean }[] = [];
  const prefill = p.causal && p.Sq > 1;
  for (let c = 0; c < parts.k.length; c++) {
    const { n0, n1 } = parts.k[c];
    const lens = Array.from(p.kvLens, (len) => Math.max(0, Math.min(len - n0, n1 - n0)));
    // Parts past every sequence's end add nothing; the first always runs so that a batch
    // with no keys at all still yields the identity state.
    if (c > 0 && lens.every((n) => n === 0)) continue;
    if (!prefill) {
      runs.push({ c, lens, causal: p.causal });
      continue;
    }
    const holds = lens.map((n, b) => (p.kvLens[b] <= n1 ? n : 0));
    const before = lens.map((n, b) => (p.kvLens[b] > n1 ? n : 0));
    before.forEach((n, b) => {
      const len = p.kvLens[b];
      if (n > 0 && len - n1 < p.Sq - 1) {
        throw new LimitError(
          `${op}: causal attention with Sq = ${p.Sq} queries over K/V stored across ` +
            `buffers (a part boundary at key ${n1}, over one buffer binding): kvLens[${b}] = ${len} ` +
            `puts the boundary within the last ${p.Sq - 1} keys, where query rows see ` +
            `different prefixes; causal prefill across a K/V buffer boundary is not ` +
            `supported there (use fewer queries per call, or Sq = 1)`,
        );
      }
    });
    const anyBefore = before.some((n) => n > 0);
    if (holds.some((n) => n > 0) || !anyBefore) runs.push({ c, lens: holds, causal: true });
    if (anyBefore) runs.push({ c, lens: before, causal: false });
  }
  // Partial states are float32 (f16 is storage only): with float16 q, the parts run on a
  // float32 copy of q, merge in float32, and only the merged output is rounded.
  const wide = runs.length > 1 && q.dtype !== "float32";
  const outShape = [p.B, p.Hq, p.Sq, p.D];
  const partialType = wide ? "float32" : q.dtype;
  const states: { out: DataId; lse: DataId }[] = [];
  let qWide: DataId | null = null;
  try {
    if (wide) qWide = backend.cast(info(q), "float32");
    const qi: TensorInfo = qWide ? { id: qWide, shape: q.shape, dtype: "float32" } : info(q);
    const kvInfo = (id: DataId, c: number): TensorInfo => ({
      id,
      shape: [p.B, p.Hkv, parts.k[c].n1 - parts.k[c].n0, p.D],
      dtype: k.dtype,
    });
    for (const { c, lens, causal } of runs) {
      states.push(backend.attention(qi, kvInfo(parts.k[c].id, c), kvInfo(parts.v[c].id, c), {
        algo,
        scale: p.scale,
        causal,
        kvLens: Int32Array.from(lens),
        schedule: reschedule(schedule, lens),
      }));
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
