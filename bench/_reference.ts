/**
 * The benchmark's float64 check: which output rows are recomputed on the host, and the
 * recomputation from the periodic K/V blocks the inputs are tiled from (bench/_inputs.ts).
 *
 * @module
 */
import type { Case } from "./_sweep.ts";
import { type VariantMath, variantMath } from "./_variants.ts";

/** Output rows (b, query head) recomputed in float64 for the check: first, and last (or longest). */
export function sampleHeads(c: Case): [number, number][] {
  const last = c.kvLens ? c.kvLens.indexOf(Math.max(...c.kvLens)) : c.B - 1;
  return last === 0 && c.Hq === 1 ? [[0, 0]] : [[0, 0], [last, c.Hq - 1]];
}

/**
 * Float64 attention output of query row (b, hq) over K/V given as periodic host blocks:
 * element i of K is `kBase[i % kBase.length]` (likewise V). With `ranges` (K/V stored in
 * parts holding keys `[n0, n1)`, each an `[B, Hkv, n1 − n0, D]` array), element i of each
 * part is `kBase[i % kBase.length]`.
 */
export function referenceRow(
  c: Case,
  b: number,
  hq: number,
  q: Float32Array,
  kBase: Float32Array,
  vBase: Float32Array,
  ranges?: readonly (readonly [number, number])[] | null,
  variant: VariantMath = variantMath(null, c, hq),
): Float64Array {
  const { D, N, Hq, Hkv } = c;
  const hk = Math.floor(hq / (Hq / Hkv));
  const len = c.kvLens ? c.kvLens[b] : N;
  const scale = 1 / Math.sqrt(D);
  const qo = (b * Hq + hq) * D;
  const out = new Float64Array(D);
  let m = -Infinity, l = 0;
  const P = kBase.length;
  if (P % D !== 0 || vBase.length !== P) {
    throw new RangeError("referenceRow: D must divide the block");
  }
  const parts = ranges ?? [[0, N] as const];
  let part = 0;
  const first = Math.max(0, len - 1 - variant.windowLeft); // decode: the row sits at len − 1
  for (let j = 0; j < len; j++) {
    while (j >= parts[part][1]) part++;
    if (j < first) continue;
    const [n0, n1] = parts[part];
    const row = (((b * Hkv + hk) * (n1 - n0) + j - n0) * D) % P;
    let s = 0;
    for (let d = 0; d < D; d++) s += q[qo + d] * kBase[row + d];
    s *= scale;
    if (variant.softcap > 0) s = variant.softcap * Math.tanh(s / variant.softcap);
    s -= variant.slope * (len - 1 - j);
    if (s > m) {
      const a = Math.exp(m - s);
      l *= a;
      for (let d = 0; d < D; d++) out[d] *= a;
      m = s;
    }
    const p = Math.exp(s - m);
    l += p;
    for (let d = 0; d < D; d++) out[d] += p * vBase[row + d];
  }
  if (variant.sink !== null) {
    // The sink: one more state (m = z, l = 1, o = 0) in the softmax.
    const m2 = Math.max(m, variant.sink);
    const a = Math.exp(m - m2);
    l = l * a + Math.exp(variant.sink - m2);
    for (let d = 0; d < D; d++) out[d] *= a;
  }
  for (let d = 0; d < D; d++) out[d] = l > 0 ? out[d] / l : 0;
  return out;
}
