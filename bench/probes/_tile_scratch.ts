/**
 * The memory layout of the CPU tile probes (`cpu_in_place.ts`, `cpu_touch_kernels.ts`): a
 * unit's scratch (q, o, scores, alpha, counts, maxima, sums, a K and a V tile) for R rows, D
 * columns and T-key tiles, then `kvBytes` for each of `regions` K/V areas, in the kernels'
 * memory, filled with seeded values in [−0.5, 0.5) and the counts, alphas and maxima set.
 *
 * @module
 */

export interface TileScratch {
  q: number;
  o: number;
  s: number;
  al: number;
  cnt: number;
  mx: number;
  sum: number;
  kt: number;
  vt: number;
  /** Offsets of the K/V areas. */
  kv: number[];
  u8: Uint8Array;
}

export function tileScratch(
  memory: WebAssembly.Memory,
  R: number,
  D: number,
  T: number,
  kvBytes: number,
  regions: number,
): TileScratch {
  let at = 0;
  const take = (b: number) => {
    const here = at;
    at += Math.ceil(b / 64) * 64;
    return here;
  };
  const [q, o, s, al, cnt, mx, sum, kt, vt] = [
    R * D * 4,
    R * D * 8,
    R * T * 4 + 64,
    R * 8,
    R * 4,
    R * 4,
    R * 4,
    T * D * 4,
    T * D * 4,
  ].map(take);
  const kv = Array.from({ length: regions }, () => take(kvBytes));
  memory.grow(Math.ceil((at - memory.buffer.byteLength) / 65536));
  const mem = memory.buffer;
  const all = new Float32Array(mem);
  let st = 1;
  for (let i = 0; i < all.length; i++) {
    all[i] = ((st = (Math.imul(st, 1103515245) + 12345) | 0) >>> 0) / 2 ** 32 - 0.5;
  }
  new Int32Array(mem, cnt, R).fill(T);
  new Float64Array(mem, al, R).fill(1);
  new Float32Array(mem, mx, R).fill(1);
  return { q, o, s, al, cnt, mx, sum, kt, vt, kv, u8: new Uint8Array(mem) };
}
