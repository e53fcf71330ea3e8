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
import type { Tensor } from "../tensor/tensor.ts";
import { add, maximum, mul, sub } from "../ops/binary.ts";
import { cast } from "../ops/cast.ts";
import { matmul } from "../ops/matmul.ts";
import { max, sum } from "../ops/reduce.ts";
import { softmax } from "../ops/softmax.ts";
import { where } from "../ops/where.ts";
import { exp, log, neg } from "../ops/unary.ts";
import { type AttentionOptions, validateAttention } from "./_validate.ts";
import type { AttentionState } from "./merge.ts";

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
  k: Tensor,
  v: Tensor,
  opts?: NaiveAttentionOptions & { returnLse?: false },
): Tensor;
/** With `returnLse: true`: `{ out, lse }`. */
export function naiveAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: NaiveAttentionOptions & { returnLse: true },
): AttentionState;
/** Either form, decided at run time by `opts.returnLse`. */
export function naiveAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts?: NaiveAttentionOptions,
): Tensor | AttentionState;
export function naiveAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: NaiveAttentionOptions = {},
): Tensor | AttentionState {
  const p = validateAttention("naiveAttention", q, k, v, opts);
  if (q.dtype !== k.dtype) {
    throw new DTypeError(
      `naiveAttention: q, k, v must have one dtype, got q ${q.dtype} ${
        fmt(q.shape)
      }, k/v ${k.dtype} ${fmt(k.shape)} (use cast())`,
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
    const k32 = f16 ? keep(cast(k, "float32")) : k;
    const v32 = f16 ? keep(cast(v, "float32")) : v;

    const qg = keep(q32.reshape([B, Hkv, G * Sq, D]));
    const raw = keep(matmul(qg, k32, { transposeB: true })); // [B, Hkv, G·Sq, N]
    let s = keep(mul(raw, p.scale));
    const mask = buildMask(p.kvLens, B, Sq, N, p.causal);
    let rows: Tensor | null = null; // [B, 1, 1, Sq, N]: 1 visible, 0 hidden
    if (mask) {
      rows = keep(fromValues(mask, [B, 1, 1, Sq, N], { backend: q.backend }));
      const s5 = keep(s.reshape([B, Hkv, G, Sq, N]));
      const masked = keep(where(rows, s5, -Infinity));
      s = keep(masked.reshape([B, Hkv, G * Sq, N]));
    }
    const probs = keep(softmax(s, -1));
    let vv = v32;
    const keys = buildKeyMask(p.kvLens, N);
    if (keys) {
      const km = keep(fromValues(keys, [B, 1, N, 1], { backend: q.backend }));
      vv = keep(where(km, v32, 0));
    }
    const rowsDiffer = p.causal && Sq > 1 && p.kvLens.some((len) => len > 0);
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
    for (const t of temps) if (t !== q && t !== k && t !== v) t.dispose();
  }
}

/** 1 where key j is visible to query row i of batch b, 0 elsewhere; null if nothing is hidden. */
function buildMask(
  kvLens: Int32Array,
  B: number,
  Sq: number,
  N: number,
  causal: boolean,
): Float32Array | null {
  const visible = (b: number, i: number) => {
    const len = kvLens[b];
    return causal ? Math.max(0, Math.min(len, len - Sq + i + 1)) : len;
  };
  let hidden = false;
  for (let b = 0; b < B && !hidden; b++) {
    for (let i = 0; i < Sq && !hidden; i++) hidden = visible(b, i) < N;
  }
  if (!hidden) return null;
  const mask = new Float32Array(B * Sq * N);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < Sq; i++) mask.fill(1, (b * Sq + i) * N, (b * Sq + i) * N + visible(b, i));
  }
  return mask;
}

/** `[B, N]`: 1 where key j < kvLens[b], 0 elsewhere; null if every key is valid. */
function buildKeyMask(kvLens: Int32Array, N: number): Float32Array | null {
  if (kvLens.every((len) => len === N)) return null;
  const mask = new Float32Array(kvLens.length * N);
  kvLens.forEach((len, b) => mask.fill(1, b * N, b * N + len));
  return mask;
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
