/**
 * Seeded random numbers: the same seed gives the same values on every run and backend
 * (values are drawn on the CPU, then uploaded).
 *
 * @module
 */

/** A 32-bit seeded generator (mulberry32) returning uniforms in [0, 1). */
export function uniformGenerator(seed: number): () => number {
  let s = (seed >>> 0) ^ 0x9e3779b9;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` standard normal samples (Box–Muller) from `seed`. */
export function normals(n: number, seed: number): Float32Array {
  const u = uniformGenerator(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u()));
    const t = 2 * Math.PI * u();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}
