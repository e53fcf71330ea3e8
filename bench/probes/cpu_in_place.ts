/**
 * Would reading float32 K/V tiles in place beat copying them to scratch first? An upper bound
 * for in place: K, V and the scratch in the one memory of a kernel instance (no explicit
 * bounds checks, unlike a second memory), GQA-4 tiles of 64 keys at D = 128, the kernels of
 * `_attention_simd.ts` (scores, smax, pexp, pv) on each tile — either at its own offset (in
 * place) or after a `copyWithin` into a tile area (as the executor stages tiles), and with
 * only K or only V in place. No JavaScript walk around the tiles; the same arithmetic in all
 * four cases. Prints median and minimum ms over interleaved rounds.
 *
 * Run: `deno run -A bench/probes/cpu_in_place.ts [units=8] [N=16384] [rounds=15]`.
 *
 * @module
 */
import { instantiateSimdKernels } from "../../backends/cpu/_attention_simd.ts";
import { tileScratch } from "./_tile_scratch.ts";

const units = Number(Deno.args[0] ?? 8);
const N = Number(Deno.args[1] ?? 16384);
const rounds = Number(Deno.args[2] ?? 15);
const R = 4, D = 128, T = 64;
const K = instantiateSimdKernels(true);
const kvBytes = units * N * D * 4;
const { q, o, s, al, cnt, mx, sum, kt, vt, kv: [kOff, vOff], u8 } = tileScratch(
  K.memory,
  R,
  D,
  T,
  kvBytes,
  2,
);
const tileBytes = T * D * 4;

function run(copyK: boolean, copyV: boolean): void {
  for (let u = 0; u < units; u++) {
    for (let t = 0; t < N; t += T) {
      const src = (u * N + t) * D * 4;
      let k = kOff + src, v = vOff + src;
      if (copyK) u8.copyWithin(k = kt, kOff + src, kOff + src + tileBytes);
      K.scores(q, k, s, R, T, D, T);
      K.smax(s, R, T, cnt, sum);
      K.pexp(s, R, T, cnt, mx, sum);
      if (copyV) u8.copyWithin(v = vt, vOff + src, vOff + src + tileBytes);
      K.pv(s, v, o, al, cnt, R, D, T);
    }
  }
}

const cases: Record<string, [boolean, boolean]> = {
  copied: [true, true],
  "in place": [false, false],
  "K in place": [false, true],
  "V in place": [true, false],
};
const times: Record<string, number[]> = {};
for (const [name, [a, b]] of Object.entries(cases)) {
  times[name] = [];
  run(a, b);
}
for (let r = 0; r < rounds; r++) {
  for (const [name, [a, b]] of Object.entries(cases)) {
    const t0 = performance.now();
    run(a, b);
    times[name].push(performance.now() - t0);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
for (const [name, ts] of Object.entries(times)) {
  console.log(`${name}: median ${median(ts).toFixed(2)} ms, min ${Math.min(...ts).toFixed(2)} ms`);
}
