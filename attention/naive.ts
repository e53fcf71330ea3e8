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
import { exp, log } from "../ops/unary.ts";
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
 * Hidden keys (≥ `kvLens[b]`, or in the causal future) are masked by adding −∞ to their
 * scores and are still multiplied, so they must hold finite values: NaN or ±∞ there (an
 * uninitialised cache page) would propagate, unlike in `flashAttention`/`leanAttention`,
 * which never read them.
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
    if (mask) {
      const m = keep(fromValues(mask, [B, 1, 1, Sq, N], { backend: q.backend }));
      const s5 = keep(s.reshape([B, Hkv, G, Sq, N]));
      const masked = keep(add(s5, m));
      s = keep(masked.reshape([B, Hkv, G * Sq, N]));
    }
    const probs = keep(softmax(s, -1));
    const o = keep(matmul(probs, v32)); // [B, Hkv, G·Sq, D]
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

/** 0 where key j is visible to query row i of batch b, −∞ elsewhere; null if nothing is hidden. */
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
    for (let i = 0; i < Sq; i++) {
      mask.fill(-Infinity, (b * Sq + i) * N + visible(b, i), (b * Sq + i) * N + N);
    }
  }
  return mask;
}
