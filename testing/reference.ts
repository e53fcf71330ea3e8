/**
 * The oracle: attention in float64, written plainly, from the same (rounded) inputs the
 * library sees. Semantics (VARIANTS.md): query i of batch b sits at position p = len − Sq + i,
 * key j at j; keys ≥ kvLens[b] ignored; the score is scale·q·k, then soft-cap, ALiBi, bias;
 * causal hides j > p, a window hides j outside [p − left, p + right]; sinks join the softmax
 * with no value. A row with no visible keys gives out = 0, lse = −∞ (with a sink: lse = z).
 *
 * Non-finite inputs follow IEEE arithmetic over the visible keys only (hidden keys are never
 * read): a NaN score or a +∞ score (∞ − ∞) makes the row NaN; a −∞ score is a key of weight 0;
 * NaN/±∞ in a visible value row reach only the matching output column. One convention on
 * top of IEEE, the one the online softmax's merge identity implies: a row whose visible
 * scores are all −∞ is a row with no keys (out = 0, lse = −∞), not `−∞ − (−∞) = NaN`.
 */
export interface RefInput {
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  v: ArrayLike<number>;
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  N: number;
  D: number;
  scale?: number;
  causal?: boolean;
  kvLens?: readonly number[];
  /** Sliding window (an absent side is unlimited). */
  window?: { left?: number; right?: number };
  /** Soft-cap c > 0. */
  softcap?: number;
  /** One sink logit per query head. */
  sinks?: ArrayLike<number>;
  /** One ALiBi slope per query head. */
  alibiSlopes?: ArrayLike<number>;
  /** Additive bias of a 4-D shape broadcastable to `[B, Hq, Sq, N]`. */
  bias?: { values: ArrayLike<number>; shape: readonly number[] };
}

/**
 * Float64 attention: out `[B,Hq,Sq,D]`, lse `[B,Hq,Sq]`, and `mag`, the largest Σⱼ wⱼ·|vⱼ|
 * over the output entries (finite terms only): the size of the values an output averages,
 * which sets its rounding error even where cancellation makes the output itself small.
 */
export function referenceAttention(
  p: RefInput,
): { out: Float64Array; lse: Float64Array; mag: number } {
  const { B, Hq, Hkv, Sq, N, D } = p;
  const scale = p.scale ?? 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  const left = p.window?.left ?? Infinity;
  const right = p.window?.right ?? Infinity;
  const out = new Float64Array(B * Hq * Sq * D);
  const lse = new Float64Array(B * Hq * Sq);
  const s = new Float64Array(N);
  const rowMag = new Float64Array(D);
  let mag = 0;
  const seen: number[] = [];
  const biasAt = (b: number, h: number, i: number, j: number): number => {
    const { values, shape } = p.bias!;
    const at = [b, h, i, j].map((x, d) => (shape[d] === 1 ? 0 : x));
    return values[((at[0] * shape[1] + at[1]) * shape[2] + at[2]) * shape[3] + at[3]];
  };
  for (let b = 0; b < B; b++) {
    const len = p.kvLens?.[b] ?? N;
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Sq; i++) {
        const pos = len - Sq + i;
        const qo = ((b * Hq + h) * Sq + i) * D;
        const row = (b * Hq + h) * Sq + i;
        seen.length = 0;
        for (let j = 0; j < len; j++) {
          if (p.causal && j > pos) continue;
          if (j < pos - left || j > pos + right) continue;
          seen.push(j);
        }
        let m = -Infinity;
        for (const j of seen) {
          const ko = ((b * Hkv + hk) * N + j) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += p.q[qo + d] * p.k[ko + d];
          let x = scale * dot;
          if (p.softcap) x = p.softcap * Math.tanh(x / p.softcap);
          if (p.alibiSlopes) x -= p.alibiSlopes[h] * Math.abs(pos - j);
          if (p.bias) x += biasAt(b, h, i, j);
          s[j] = x;
          if (x > m || Number.isNaN(x)) m = Number.isNaN(m) ? m : x;
        }
        const z = p.sinks ? p.sinks[h] : -Infinity;
        if (m === -Infinity && z === -Infinity) {
          lse[row] = -Infinity; // every visible score −∞: the merge identity, as if no keys
          continue;
        }
        if (!(m >= z)) m = Number.isNaN(m) ? m : z; // the sink joins the max
        let l = z === -Infinity ? 0 : Math.exp(z - m);
        for (const j of seen) {
          s[j] = Math.exp(s[j] - m);
          l += s[j];
        }
        rowMag.fill(0);
        for (const j of seen) {
          const vo = ((b * Hkv + hk) * N + j) * D;
          const w = s[j] / l;
          for (let d = 0; d < D; d++) {
            const t = w * p.v[vo + d];
            out[qo + d] += t;
            if (Number.isFinite(t)) rowMag[d] += Math.abs(t);
          }
        }
        for (let d = 0; d < D; d++) mag = Math.max(mag, rowMag[d]);
        lse[row] = m + Math.log(l);
      }
    }
  }
  return { out, lse, mag };
}

/** Largest |x|. */
export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

/** Largest |a − b| (NaN if either has a NaN where the other does not). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue; // equal infinities
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return NaN;
    m = Math.max(m, d);
  }
  return m;
}

/**
 * The tolerances the attention tests allow against {@link referenceAttention}: float32
 * rounding of scores and sums grows slowly with the key count `N`, in proportion to the
 * values averaged (`ref.mag` where given, else the largest output); a float16 output adds its
 * own rounding (half an ulp of the largest value, twice).
 */
export function attentionTolerances(
  ref: { out: ArrayLike<number>; lse: ArrayLike<number>; mag?: number },
  N: number,
  outDtype: string,
): { out: number; lse: number } {
  const grow = Math.max(1, Math.log2(Math.max(1, N)) / 4);
  let out = 1e-5 * Math.max(1e-3, maxAbs(ref.out), ref.mag ?? 0) * grow;
  const finite = Array.from(ref.lse).filter(Number.isFinite);
  const lse = 1e-5 * Math.max(1, maxAbs(finite)) * grow;
  if (outDtype === "float16") out += 2 * 2 ** -11 * maxAbs(ref.out);
  return { out, lse };
}
