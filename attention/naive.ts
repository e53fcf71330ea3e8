/**
 * Naive attention, composed from the public ops: materialise every score, mask, softmax,
 * multiply by V. It is the readable statement of the math the fused algorithms must match.
 *
 * GQA without copying K/V: q `[B, Hq, Sq, D]` is viewed as `[B, Hkv, G·Sq, D]` (query head
 * `h = hk·G + g` becomes rows `g·Sq .. g·Sq+Sq−1` of kv head `hk`), so one batched matmul
 * against k `[B, Hkv, N, D]` gives every score. The mask depends only on (batch, query row,
 * key), so it is built once on the CPU side as `[B, 1, 1, Sq, N]` and broadcast over the
 * scores viewed as `[B, Hkv, G, Sq, N]`.
 *
 * Hidden keys are never read, as in the fused kernels: masking selects (`where`) instead of
 * adding −∞, so a NaN or ∞ score of a hidden key is replaced rather than combined. On the V
 * side the product `probs · v` multiplies hidden rows by weight 0, and `0 · NaN = 0 · ∞ =
 * NaN`; keys hidden from every row (≥ `kvLens[b]`) are therefore zeroed in V first. Under a
 * causal mask with `Sq > 1` rows see different prefixes, so no single V fits them all: there
 * the product runs over V's finite entries only and each non-finite entry is accounted for
 * by counting, per output element, the visible keys that carry it (see `nonFiniteV`).
 *
 * float16 inputs are cast to float32 first (f16 is storage, f32 is arithmetic) and the output
 * is cast back, so the only f16 rounding is of the inputs and the final output.
 *
 * @module
 */
import { DTypeError } from "../tensor/errors.ts";
import { fromValues } from "../tensor/creation.ts";
import { fmt } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import { add, div, maximum, mul, sub } from "../ops/binary.ts";
import { cast } from "../ops/cast.ts";
import { dequantize, type QuantizedTensor } from "../ops/quantize.ts";
import type { QuantDType } from "../tensor/dtype.ts";
import { matmul } from "../ops/matmul.ts";
import { max, sum } from "../ops/reduce.ts";
import { softmax } from "../ops/softmax.ts";
import { where } from "../ops/where.ts";
import { exp, log, neg, tanh } from "../ops/unary.ts";
import { type AttentionOptions, type AttentionProblem, validateAttention } from "./_validate.ts";
import type { AttentionState } from "./merge.ts";
import {
  gatherRows,
  isPagedSource,
  PAGED_VIEW,
  pagedBackend,
  type PagedSource,
} from "./_paged_view.ts";
import type { KVCache } from "./kv_cache.ts";
import type { PagedKV } from "./paged_kv.ts";

/** Options of {@link naiveAttention}. */
export type NaiveAttentionOptions = AttentionOptions;

// Clamping the row max to this keeps `s − m` finite-or-−∞ when a row is fully masked
// (m = −∞ would give −∞ − (−∞) = NaN); any row with a visible finite score is unaffected.
const LOWEST_F32 = -3.4028234663852886e38;

/**
 * Attention by materialising the scores (`softmax(scale·q·kᵀ + mask)·v`).
 *
 * q `[B, Hq, Sq, D]`, k and v `[B, Hkv, N, D]` with `Hq % Hkv == 0`, all of one dtype. Rows
 * with no visible key give out = 0 and lse = −∞.
 *
 * Hidden keys (≥ `kvLens[b]`, or in the causal future) never affect the result, whatever
 * they hold (an uninitialised cache page may hold NaN), exactly as in
 * `flashAttention`/`leanAttention`. NaN or ±∞ in visible inputs propagate as IEEE arithmetic
 * of the float64 reference would (up to float32 underflow of tiny weights).
 *
 * @example
 * ```ts
 * import { naiveAttention, randn } from "../mod.ts";
 * const q = randn([1, 4, 1, 8], { seed: 1 });
 * const k = randn([1, 2, 16, 8], { seed: 2 });
 * const v = randn([1, 2, 16, 8], { seed: 3 });
 * const out = naiveAttention(q, k, v, { kvLens: [10] });
 * console.log(out.shape); // [1, 4, 1, 8]
 * ```
 */
export function naiveAttention(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts?: NaiveAttentionOptions & { returnLse?: false },
): Tensor;
/** With `returnLse: true`: `{ out, lse }`. */
export function naiveAttention(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts: NaiveAttentionOptions & { returnLse: true },
): AttentionState;
/** Either form, decided at run time by `opts.returnLse`. */
export function naiveAttention(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts?: NaiveAttentionOptions,
): Tensor | AttentionState;
/** naiveAttention over a paged KV cache or view: lengths from `kv`, `{ out, lse }`. */
export function naiveAttention(
  q: Tensor,
  kv: KVCache | PagedKV,
  opts: NaiveAttentionOptions & { returnLse: true },
): AttentionState;
/** naiveAttention over a paged KV cache or view (`kvLens` comes from `kv`). */
export function naiveAttention(
  q: Tensor,
  kv: KVCache | PagedKV,
  opts?: NaiveAttentionOptions & { returnLse?: false },
): Tensor;
/** naiveAttention over paged K/V with `returnLse` known only at run time. */
export function naiveAttention(
  q: Tensor,
  kv: KVCache | PagedKV,
  opts?: NaiveAttentionOptions,
): Tensor | AttentionState;
export function naiveAttention(
  q: Tensor,
  k: Tensor | PagedSource | QuantizedTensor,
  v?: Tensor | QuantizedTensor | NaiveAttentionOptions,
  opts?: NaiveAttentionOptions,
): Tensor | AttentionState {
  if (isPagedSource(k)) return naiveOverPages(q, k, v as NaiveAttentionOptions | undefined, opts);
  return naiveContiguous(q, k, v as Tensor | QuantizedTensor, opts);
}

/**
 * Naive attention over pages: the rows the lengths use are gathered into contiguous K/V
 * `[B, Hkv, maxBlocks · pageSize, D]` (zeros past each length) and attended as usual.
 */
function naiveOverPages(
  q: Tensor,
  kv: PagedSource,
  opts: NaiveAttentionOptions | undefined,
  fourth: unknown,
): Tensor | AttentionState {
  const op = "naiveAttention";
  const p = validateAttention(op, q, kv, opts, fourth);
  const view = kv[PAGED_VIEW](op);
  const backend = pagedBackend(op, p.backend);
  const start = new Int32Array(p.B);
  const kvOpts = { ...p.opts, kvLens: Array.from(view.kvLens) };
  // Quantized pages come back dequantized (float32): a float16 q then runs as float32.
  const quant = view.kScalePages !== undefined;
  const k = gatherRows(backend, view, view.kPages, start, view.kvLens, p.N, view.kScalePages);
  try {
    const v = gatherRows(backend, view, view.vPages, start, view.kvLens, p.N, view.vScalePages);
    try {
      if (!quant || q.dtype === "float32") return naiveContiguous(q, k, v, kvOpts);
      const q32 = cast(q, "float32");
      try {
        return toF16(naiveContiguous(q32, k, v, kvOpts));
      } finally {
        q32.dispose();
      }
    } finally {
      v.dispose();
    }
  } finally {
    k.dispose();
  }
}

/** A float32 result as float16 output (lse stays float32), the float32 out disposed. */
function toF16(r: Tensor | AttentionState): Tensor | AttentionState {
  const o = r instanceof Tensor ? r : r.out;
  const o16 = cast(o, "float16");
  o.dispose();
  return r instanceof Tensor ? o16 : { out: o16, lse: r.lse };
}

function naiveContiguous(
  q: Tensor,
  k: Tensor | QuantizedTensor,
  v: Tensor | QuantizedTensor,
  opts: NaiveAttentionOptions | undefined,
): Tensor | AttentionState {
  const p = validateAttention("naiveAttention", q, k, v, opts);
  if (!p.kvScales && q.dtype !== p.k.dtype) {
    throw new DTypeError(
      `naiveAttention: q, k, v must have one dtype, got q ${q.dtype} ${
        fmt(q.shape)
      }, k/v ${p.k.dtype} ${fmt(p.k.shape)} (use cast())`,
    );
  }
  const { B, Hq, Hkv, Sq, N, D } = p;
  const G = Hq / Hkv;
  const temps: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => {
    temps.push(t);
    return t;
  };
  try {
    const f16 = q.dtype === "float16";
    const q32 = f16 ? keep(cast(q, "float32")) : q;
    // Quantized K/V: attention over their float32 dequantized values.
    const kv32 = (t: Tensor, scale: Tensor | undefined) =>
      scale
        ? keep(dequantize({ dtype: t.dtype as QuantDType, data: t, scale }))
        : f16
        ? keep(cast(t, "float32"))
        : t;
    const k32 = kv32(p.k, p.kScale);
    const v32 = kv32(p.v, p.vScale);

    // q is scaled before the product, as the fused kernels do: scale·(q·k) could overflow
    // float32 where (scale·q)·k does not.
    const qg = keep(keep(mul(q32, p.scale)).reshape([B, Hkv, G * Sq, D]));
    let s = keep(matmul(qg, k32, { transposeB: true })); // [B, Hkv, G·Sq, N]
    s = variantScores(s, p, keep);
    const win = p.variant.variant;
    const mask = buildMask(p, win.windowLeft, win.windowRight);
    let rows: Tensor | null = null; // [B, 1, 1, Sq, N]: 1 visible, 0 hidden
    if (mask) {
      rows = keep(fromValues(mask, [B, 1, 1, Sq, N], { backend: q.backend }));
      const s5 = keep(s.reshape([B, Hkv, G, Sq, N]));
      const masked = keep(where(rows, s5, -Infinity));
      s = keep(masked.reshape([B, Hkv, G * Sq, N]));
    }
    const sinks = sinkLogits(p, keep); // [1, Hkv, G, 1, 1], or null
    const sm = sinks ? softmaxWithSinks(s, sinks, [B, Hkv, G, Sq, N], keep) : null;
    const probs = sm ? sm.probs : keep(softmax(s, -1));
    let vv = v32;
    const keys = mask && buildKeyMask(mask, B, Sq, N);
    if (keys) {
      const km = keep(fromValues(keys, [B, 1, N, 1], { backend: q.backend }));
      vv = keep(where(km, v32, 0));
    }
    // Rows see different keys (causal or a window with Sq > 1): no single V fits them all.
    const windowed = win.windowLeft !== Infinity || win.windowRight !== Infinity;
    const rowsDiffer = (p.causal || windowed) && Sq > 1 && p.kvLens.some((len) => len > 0);
    const o = rowsDiffer && rows
      ? nonFiniteV(probs, vv, rows, [B, Hkv, G, Sq, N, D], keep)
      : keep(matmul(probs, vv)); // [B, Hkv, G·Sq, D]
    const o32 = o.reshape([B, Hq, Sq, D]);
    let out = o32;
    if (f16) {
      keep(o32);
      out = cast(o32, "float16");
    }
    if (!p.returnLse) return out;
    if (sm) return { out, lse: sm.lse.reshape([B, Hq, Sq]) };

    const mx = keep(max(s, -1, true));
    const mc = keep(maximum(mx, LOWEST_F32));
    const shifted = keep(sub(s, mc));
    const e = keep(exp(shifted));
    const l = keep(sum(e, -1, true));
    const logl = keep(log(l));
    const lse4 = keep(add(mc, logl)); // [B, Hkv, G·Sq, 1]; −∞ where nothing is visible
    const lse = lse4.reshape([B, Hq, Sq]);
    return { out, lse };
  } finally {
    for (const t of temps) if (t !== q && t !== p.k && t !== p.v) t.dispose();
  }
}

type Keep = <T extends Tensor>(t: T) => T;

/**
 * The variant's score changes in VARIANTS.md order, on the scores `[B, Hkv, G·Sq, N]`:
 * soft-cap `c·tanh(s/c)`, ALiBi `−slope_h·|p_i − j|` (slopes × a host-built distance table),
 * bias (broadcast over the scores viewed as `[B, Hkv, G, Sq, N]`).
 */
function variantScores(s: Tensor, p: AttentionProblem, keep: Keep): Tensor {
  const { B, Hq, Hkv, Sq, N } = p;
  const G = Hq / Hkv;
  const { softcap } = p.variant.variant;
  if (softcap > 0) s = keep(mul(keep(tanh(keep(div(s, softcap)))), softcap));
  const { alibiSlopes, bias } = p.variant;
  if (!alibiSlopes && !bias) return s;
  let s5 = keep(s.reshape([B, Hkv, G, Sq, N]));
  if (alibiSlopes) {
    const dist = new Float32Array(B * Sq * N);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < Sq; i++) {
        const pos = p.kvLens[b] - Sq + i;
        for (let j = 0; j < N; j++) dist[(b * Sq + i) * N + j] = Math.abs(pos - j);
      }
    }
    const d = keep(fromValues(dist, [B, 1, 1, Sq, N], { backend: p.backend }));
    const slopes = keep(headTensor(alibiSlopes, p, keep).reshape([1, Hkv, G, 1, 1]));
    s5 = keep(sub(s5, keep(mul(slopes, d))));
  }
  if (bias) {
    const [b0, h0, s0, n0] = bias.shape;
    const t = bias.t.dtype === "float32" ? bias.t : keep(cast(bias.t, "float32"));
    const view = keep(t.reshape([b0, h0 === 1 ? 1 : Hkv, h0 === 1 ? 1 : G, s0, n0]));
    s5 = keep(add(s5, view));
  }
  return keep(s5.reshape([B, Hkv, G * Sq, N]));
}

/** A per-head vector option as a tensor `[Hq]` on the call's backend. */
function headTensor(v: Float32Array | Tensor, p: AttentionProblem, keep: Keep): Tensor {
  return v instanceof Tensor ? v : keep(fromValues(Float32Array.from(v), [p.Hq], {
    backend: p.backend,
  }));
}

/** The sink logits viewed as `[1, Hkv, G, 1, 1]`, or null without sinks. */
function sinkLogits(p: AttentionProblem, keep: Keep): Tensor | null {
  if (!p.variant.sinks) return null;
  return keep(headTensor(p.variant.sinks, p, keep).reshape([1, p.Hkv, p.Hq / p.Hkv, 1, 1]));
}

/**
 * Softmax over each row's keys plus its head's sink logit `z` (an extra column with no value):
 * `m = max(max_j s_j, z)`, `l = Σ exp(s_j − m) + exp(z − m)`, probs `exp(s − m) / l`, and
 * `lse = m + ln l`. Hidden scores are −∞ already (weight 0).
 */
function softmaxWithSinks(
  s: Tensor,
  z: Tensor,
  [B, Hkv, G, Sq, N]: readonly number[],
  keep: Keep,
): { probs: Tensor; lse: Tensor } {
  const s5 = keep(s.reshape([B, Hkv, G, Sq, N]));
  const m = keep(maximum(keep(max(s5, -1, true)), z)); // [B, Hkv, G, Sq, 1]
  const e = keep(exp(keep(sub(s5, m))));
  const l = keep(add(keep(sum(e, -1, true)), keep(exp(keep(sub(z, m))))));
  const probs = keep(keep(div(e, l)).reshape([B, Hkv, G * Sq, N]));
  const lse = keep(add(m, keep(log(l))));
  return { probs, lse };
}

/**
 * 1 where key j is visible to query row i of batch b (its length, causal, the window), 0
 * elsewhere, `[B, Sq, N]`; null if nothing is hidden.
 */
function buildMask(p: AttentionProblem, left: number, right: number): Float32Array | null {
  const { B, Sq, N, kvLens, causal } = p;
  const range = (b: number, i: number): [number, number] => {
    const len = kvLens[b];
    const pos = len - Sq + i;
    let hi = causal ? Math.min(len, pos + 1) : len;
    if (right !== Infinity) hi = Math.min(hi, pos + right + 1);
    const lo = left === Infinity ? 0 : Math.max(0, pos - left);
    return [lo, Math.max(lo, hi)];
  };
  let hidden = false;
  for (let b = 0; b < B && !hidden; b++) {
    for (let i = 0; i < Sq && !hidden; i++) {
      const [lo, hi] = range(b, i);
      hidden = lo > 0 || hi < N;
    }
  }
  if (!hidden) return null;
  const mask = new Float32Array(B * Sq * N);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Sq; i++) {
      const [lo, hi] = range(b, i);
      mask.fill(1, (b * Sq + i) * N + lo, (b * Sq + i) * N + hi);
    }
  }
  return mask;
}

/** `[B, N]`: 1 where some row of batch b sees key j, 0 elsewhere; null if every key is seen. */
function buildKeyMask(mask: Float32Array, B: number, Sq: number, N: number): Float32Array | null {
  const keys = new Float32Array(B * N);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Sq; i++) {
      for (let j = 0; j < N; j++) if (mask[(b * Sq + i) * N + j]) keys[b * N + j] = 1;
    }
  }
  return keys.every((x) => x === 1) ? null : keys;
}

/**
 * `probs · v` `[B, Hkv, G·Sq, D]` with IEEE semantics over each row's visible keys only,
 * for masks where rows see different keys (causal, `Sq > 1`). A plain product would turn a
 * hidden key's weight 0 times a non-finite value into NaN. So the product runs over V with
 * NaN/±∞ replaced by 0, and per output element (row i, column d) we count the visible keys
 * whose value is NaN, +∞ or −∞, split by whether their weight is 0 (only possible when it
 * underflows); then, as the float64 sum would: any NaN, or ∞ times a zero weight, or +∞
 * with −∞ gives NaN; else +∞ or −∞ if present; else the finite product. A NaN product (a
 * NaN score) stays NaN. Counts are exact: 0/1 products summed in float32 up to N < 2²⁴.
 */
function nonFiniteV(
  probs: Tensor,
  v: Tensor,
  rows: Tensor,
  [B, Hkv, G, Sq, N, D]: readonly number[],
  keep: <T extends Tensor>(t: T) => T,
): Tensor {
  const bad = keep(where(keep(sub(v, v)), 1, 0)); // x − x is NaN exactly for NaN and ±∞
  const finite = keep(where(bad, 0, v));
  const o = keep(matmul(probs, finite));
  // maximum(∓x, 0) is 0 exactly for ±∞ among the non-finite values (NaN stays NaN).
  const posInf = keep(where(bad, keep(where(keep(maximum(keep(neg(v)), 0)), 0, 1)), 0));
  const negInf = keep(where(bad, keep(where(keep(maximum(v, 0)), 0, 1)), 0));
  const inf = keep(add(posInf, negInf));
  const nan = keep(sub(bad, inf));
  const p5 = keep(probs.reshape([B, Hkv, G, Sq, N]));
  const weighted = keep(where(probs, 1, 0)); // hidden weights are exactly 0
  const zeroVisible = keep(keep(where(p5, 0, rows)).reshape([B, Hkv, G * Sq, N]));
  const rows4 = keep(rows.reshape([B, 1, Sq, N]));
  const nanSeen = keep(keep(matmul(rows4, nan)).reshape([B, Hkv, 1, Sq, D]));
  const infUnweighted = keep(keep(matmul(zeroVisible, inf)).reshape([B, Hkv, G, Sq, D]));
  const nanRow = keep(keep(where(keep(sub(o, o)), 1, 0)).reshape([B, Hkv, G, Sq, D]));
  const nanCount = keep(add(keep(add(nanSeen, infUnweighted)), nanRow));
  const pos = keep(keep(matmul(weighted, posInf)).reshape([B, Hkv, G, Sq, D]));
  const negs = keep(keep(matmul(weighted, negInf)).reshape([B, Hkv, G, Sq, D]));
  const o5 = keep(o.reshape([B, Hkv, G, Sq, D]));
  const withInf = keep(
    where(pos, keep(where(negs, NaN, Infinity)), keep(where(negs, -Infinity, o5))),
  );
  const r = keep(where(nanCount, NaN, withInf));
  return keep(r.reshape([B, Hkv, G * Sq, D]));
}
