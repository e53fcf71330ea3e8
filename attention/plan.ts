/**
 * Planning an attention call: validated problem + knobs → one {@link AttentionPlan}, made
 * once and cached per backend, so repeated calls of one shape (every layer of a decode step)
 * skip the schedule, the grid's cost model and the backend's kernel preparation.
 *
 * The plan depends only on what the cache key holds: the shapes and dtypes, the resolved
 * options and lengths, the inputs of any default the knobs resolve (e.g. the default grid),
 * and where K/V parts begin and end. Tensors are not part of it, so one plan serves any
 * q, k, v of that description.
 *
 * @module
 */
import type { Tensor } from "../tensor/tensor.ts";
import { LimitError } from "../tensor/errors.ts";
import { fmt } from "../tensor/shape.ts";
import type { Backend, StoragePart, TensorInfo } from "../backends/backend.ts";
import {
  type AttentionAlgo,
  type AttentionPlan,
  type AttentionRun,
  isPlainVariant,
} from "../schedule/attention_plan.ts";
import type { LeanPlan, LeanSchedule } from "../schedule/lean_schedule.ts";
import type { AttentionProblem } from "./_validate.ts";
import { variantKey } from "./_variant.ts";

/**
 * What a schedule builder is given besides the algorithm's knobs: the lengths, and with a
 * window what bounds each unit's visible keys (query rows, causal, positions).
 */
export type ScheduleLens = Pick<
  LeanPlan,
  "kvLens" | "window" | "Sq" | "causal" | "positionLens" | "keyOffset"
>;

/** How one algorithm turns a problem into schedules. */
export interface Planner {
  /** The op's name for messages. */
  readonly op: string;
  /** Cache key of the knobs, including the inputs of any default they resolve. */
  readonly key: string;
  /** Resolves the knobs (on a cache miss); the builder makes a schedule for given lengths. */
  resolve(p: AttentionProblem): {
    algo: AttentionAlgo;
    schedule(lens: ScheduleLens): LeanSchedule;
  };
}

/** Plans kept per backend (most recently used last); enough for every layer shape of a model. */
const MAX_CACHED = 64;
const cache = new WeakMap<Backend, Map<string, AttentionPlan>>();

const info = (t: Tensor): TensorInfo => ({ id: t.id, shape: t.shape, dtype: t.dtype });

/** The plan of one call: from the cache, or made (and cached) now. */
export function planAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  p: AttentionProblem,
  planner: Planner,
): AttentionPlan {
  const parts = kvParts(planner.op, p.backend, q, k, v, p.paged !== undefined);
  const { paged } = p;
  const key = [
    planner.key,
    q.shape.join(","),
    k.shape.join(","),
    q.dtype,
    k.dtype,
    p.kvScales ?? "",
    p.scale,
    p.causal,
    p.kvLens.join(","),
    parts ? parts.map((x) => x.n0).join(",") : "whole",
    paged
      ? `paged ${paged.pageSize},${paged.maxBlocks},${paged.pagesPerBuffer},${paged.buffers},${paged.pages}`
      : "contiguous",
    variantKey(p.variant.variant),
  ].join("|");
  let plans = cache.get(p.backend);
  if (!plans) cache.set(p.backend, plans = new Map());
  const hit = plans.get(key);
  if (hit) {
    plans.delete(key); // most recently used last
    plans.set(key, hit);
    return hit;
  }
  const plan = makePlan(q, k, p, planner, parts);
  plans.set(key, plan);
  if (plans.size > MAX_CACHED) plans.delete(plans.keys().next().value!);
  return plan;
}

function makePlan(
  q: Tensor,
  k: Tensor,
  p: AttentionProblem,
  planner: Planner,
  parts: readonly StoragePart[] | null,
): AttentionPlan {
  const { algo, schedule: build } = planner.resolve(p);
  const variant = p.variant.variant;
  const windowed = variant.windowLeft !== Infinity || variant.windowRight !== Infinity;
  // With a window a unit covers only the keys its rows can see (positions of the whole call).
  const lensOf = (kvLens: number[], keyOffset: number): ScheduleLens =>
    windowed
      ? {
        kvLens,
        window: { left: variant.windowLeft, right: variant.windowRight },
        Sq: p.Sq,
        causal: p.causal,
        positionLens: Array.from(p.kvLens),
        keyOffset,
      }
      : { kvLens };
  const lens = Array.from(p.kvLens);
  const schedule = build(lensOf(lens, 0));
  const common = { algo, scale: p.scale, variant };
  let runs: AttentionRun[];
  if (!parts) {
    runs = [{
      ...common,
      causal: p.causal,
      kvLens: p.kvLens,
      schedule,
      keyOffset: 0,
      positionLens: p.kvLens,
      ...(p.paged ? { paged: p.paged } : {}),
    }];
  } else if (isPlainVariant(variant)) {
    runs = partRuns(planner.op, p, parts).map((r) => ({
      ...common,
      causal: r.causal,
      kvLens: Int32Array.from(r.lens),
      schedule: build({ kvLens: r.lens }),
      part: r.part,
      // The causal runs of parts align to their own lengths (see partRuns).
      keyOffset: 0,
      positionLens: Int32Array.from(r.lens),
    }));
  } else {
    runs = variantPartRuns(p, parts, common, (l, off) => build(lensOf(l, off)));
  }
  const plan: AttentionPlan = {
    algo,
    qShape: q.shape,
    kvShape: p.paged ? [p.B, p.Hkv, p.N, p.D] : k.shape,
    qDtype: q.dtype,
    kvDtype: k.dtype,
    ...(p.kvScales ? { kvScales: p.kvScales } : {}),
    runDtype: runs.length > 1 && q.dtype !== "float32" ? "float32" : q.dtype,
    scale: p.scale,
    causal: p.causal,
    kvLens: p.kvLens,
    schedule,
    variant,
    ...(p.paged ? { paged: p.paged } : {}),
    parts: parts ? parts.map(({ n0, n1 }) => Object.freeze({ n0, n1 })) : null,
    runs,
  };
  if (p.backend.prepareAttention) {
    for (const r of runs) r.prepared = p.backend.prepareAttention(plan, r);
  }
  runs.forEach((r) => Object.freeze(r));
  Object.freeze(runs);
  return Object.freeze(plan);
}

/** The matching parts of k and v when the backend stored them in parts, else null. */
function kvParts(
  op: string,
  backend: Backend,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  paged: boolean,
): readonly StoragePart[] | null {
  if (!backend.storageParts) return null;
  if (backend.storageParts(info(q))) {
    throw new LimitError(
      `${op}: q ${fmt(q.shape)} is too large for one buffer binding and was stored across ` +
        `several buffers; only k and v may be stored in parts (run fewer queries per call)`,
    );
  }
  // Paged K/V are never in parts: each page buffer is within one binding (pagedKV checks).
  if (paged) return null;
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
        `buffer binding must be cut into the same parts (create both with the same shape and ` +
        `dtype)`,
    );
  }
  return kp;
}

/**
 * The runs of a variant over K/V parts, in key order: each part's keys keep their positions
 * (`keyOffset` = the part's first key, `positionLens` = the call's lengths), so causal
 * masking, windows, ALiBi and bias need no special cases. The sink is left out of every run
 * (`variant.sinks` false there; the plan's variant keeps it): the executor merges it once,
 * after the parts' states (VARIANTS.md, "The softmax, with sinks").
 */
function variantPartRuns(
  p: AttentionProblem,
  parts: readonly StoragePart[],
  common: Pick<AttentionRun, "algo" | "scale" | "variant">,
  build: (kvLens: number[], keyOffset: number) => LeanSchedule,
): AttentionRun[] {
  const variant = Object.freeze({ ...common.variant, sinks: false });
  const runs: AttentionRun[] = [];
  for (let c = 0; c < parts.length; c++) {
    const { n0 } = parts[c];
    const lens = partLens(p.kvLens, parts[c]);
    const schedule = build(lens, n0);
    // Parts nobody sees add nothing (a window over a long cache sees only the last part:
    // one run, so no merge and no float32 copy of q).
    if (schedule.totalTiles === 0) continue;
    runs.push({
      ...common,
      variant,
      causal: p.causal,
      kvLens: Int32Array.from(lens),
      schedule,
      part: c,
      keyOffset: n0,
      positionLens: p.kvLens,
    });
  }
  if (runs.length === 0) {
    // No key visible anywhere: one run of the first part gives the identity state.
    const lens = partLens(p.kvLens, parts[0]);
    runs.push({
      ...common,
      variant,
      causal: p.causal,
      kvLens: Int32Array.from(lens),
      schedule: build(lens, 0),
      part: 0,
      keyOffset: 0,
      positionLens: p.kvLens,
    });
  }
  return runs;
}

/**
 * The runs over K/V parts, in key order, each with the lengths it sees.
 *
 * The causal mask is bottom-right aligned to each run's own lengths, which is right for the
 * part holding kvLens[b] but would hide the tail of a part wholly before it. Such parts run
 * unmasked instead (a batch mixing both kinds in one part runs it twice, the other entries'
 * lengths zeroed: each state is then the identity where it does not apply). Unmasked is right
 * only if every query row sees the whole part, i.e. the part ends at least Sq − 1 keys before
 * kvLens[b]; otherwise the call is refused here, before anything is dispatched.
 */
function partRuns(
  op: string,
  p: AttentionProblem,
  parts: readonly StoragePart[],
): { part: number; lens: number[]; causal: boolean }[] {
  const runs: { part: number; lens: number[]; causal: boolean }[] = [];
  const prefill = p.causal && p.Sq > 1;
  for (let c = 0; c < parts.length; c++) {
    const { n1 } = parts[c];
    const lens = partLens(p.kvLens, parts[c]);
    // Parts past every sequence's end add nothing; the first always runs so that a batch
    // with no keys at all still yields the identity state.
    if (c > 0 && lens.every((n) => n === 0)) continue;
    if (!prefill) {
      runs.push({ part: c, lens, causal: p.causal });
      continue;
    }
    const holds = lens.map((n, b) => (p.kvLens[b] <= n1 ? n : 0));
    const before = lens.map((n, b) => (p.kvLens[b] > n1 ? n : 0));
    before.forEach((n, b) => {
      const len = p.kvLens[b];
      if (n > 0 && len - n1 < p.Sq - 1) {
        throw new LimitError(
          `${op}: causal attention with Sq = ${p.Sq} queries over K/V stored across ` +
            `buffers (a part boundary at key ${n1}, over one buffer binding): kvLens[${b}] = ` +
            `${len} puts the boundary within the last ${p.Sq - 1} keys, where query rows see ` +
            `different prefixes; causal prefill across a K/V buffer boundary is not ` +
            `supported there (use fewer queries per call, or Sq = 1)`,
        );
      }
    });
    const anyBefore = before.some((n) => n > 0);
    if (holds.some((n) => n > 0) || !anyBefore) runs.push({ part: c, lens: holds, causal: true });
    if (anyBefore) runs.push({ part: c, lens: before, causal: false });
  }
  return runs;
}

/** Each sequence's valid keys within the part `[n0, n1)` of the key axis. */
function partLens(kvLens: Int32Array, { n0, n1 }: { n0: number; n1: number }): number[] {
  return Array.from(kvLens, (len) => Math.max(0, Math.min(len - n0, n1 - n0)));
}
