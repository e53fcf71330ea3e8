/**
 * The oracle: attention in float64, written plainly, from the same (rounded) inputs the
 * library sees. Semantics: keys ≥ kvLens[b] ignored; causal bottom-right (query i sees keys
 * < len − Sq + i + 1); a row with no visible keys gives out = 0, lse = −∞.
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
}

/** Float64 attention: out `[B,Hq,Sq,D]`, lse `[B,Hq,Sq]`. */
export function referenceAttention(p: RefInput): { out: Float64Array; lse: Float64Array } {
  const { B, Hq, Hkv, Sq, N, D } = p;
  const scale = p.scale ?? 1 / Math.sqrt(D);
  const group = Hq / Hkv;
  const out = new Float64Array(B * Hq * Sq * D);
  const lse = new Float64Array(B * Hq * Sq);
  const s = new Float64Array(N);
  for (let b = 0; b < B; b++) {
    const len = p.kvLens?.[b] ?? N;
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / group);
      for (let i = 0; i < Sq; i++) {
        const visible = p.causal ? Math.max(0, Math.min(len, len - Sq + i + 1)) : len;
        const qo = ((b * Hq + h) * Sq + i) * D;
        const row = (b * Hq + h) * Sq + i;
        if (visible === 0) {
          lse[row] = -Infinity;
          continue;
        }
        let m = -Infinity;
        for (let j = 0; j < visible; j++) {
          const ko = ((b * Hkv + hk) * N + j) * D;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += p.q[qo + d] * p.k[ko + d];
          s[j] = scale * dot;
          if (s[j] > m || Number.isNaN(s[j])) m = Number.isNaN(m) ? m : s[j];
        }
        if (m === -Infinity) {
          lse[row] = -Infinity; // every visible score −∞: the merge identity, as if no keys
          continue;
        }
        let l = 0;
        for (let j = 0; j < visible; j++) {
          s[j] = Math.exp(s[j] - m);
          l += s[j];
        }
        for (let j = 0; j < visible; j++) {
          const vo = ((b * Hkv + hk) * N + j) * D;
          const w = s[j] / l;
          for (let d = 0; d < D; d++) out[qo + d] += w * p.v[vo + d];
        }
        lse[row] = m + Math.log(l);
      }
    }
  }
  return { out, lse };
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
