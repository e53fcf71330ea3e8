/**
 * Does touching the next K/V tile while the current one is computed (one load a cache line,
 * interleaved with `scores`) hide the stream? Compared with the executor's way (copy a tile to
 * scratch, then compute) and with plain in place. One memory, GQA-4 tiles of 64 keys, D = 128,
 * each tile's K and V adjacent (so one pointer covers the next tile's 64 KB).
 *
 * Run: `deno run -A bench/probes/cpu_touch_kernels.ts [units=8] [N=16384] [rounds=15] [lines=64] [ahead=1] [block|trip]`.
 */
import { kernelModuleBytes, simdFunctions, simdMadd } from "../../backends/cpu/_attention_simd.ts";
import { scoresTouch } from "../../backends/cpu/_wasm_scores.ts"; // needs the patch
import { tileScratch } from "./_tile_scratch.ts";

const units = Number(Deno.args[0] ?? 8);
const N = Number(Deno.args[1] ?? 16384);
const rounds = Number(Deno.args[2] ?? 15);
const LINES = Number(Deno.args[3] ?? 64);
const AHEAD = Number(Deno.args[4] ?? 1);
const R = 4, D = 128, T = 64;
const bytes = kernelModuleBytes([
  ...simdFunctions(true),
  ["scoresT", scoresTouch(simdMadd(true), LINES, Deno.args[5] === "trip")],
]);
// deno-lint-ignore no-explicit-any
const K = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as any;
const tileBytes = T * D * 4;
const tiles = units * (N / T);
// One spare tile a step ahead: the last tiles' touches stay inside the memory.
const { q, o, s, al, cnt, mx, sum, kt, vt, kv: [kv], u8 } = tileScratch(
  K.mem,
  R,
  D,
  T,
  (tiles + AHEAD) * 2 * tileBytes,
  1,
);

type Mode = "copied" | "in place" | "touch, in place" | "touch, copied" | "cached";
function run(mode: Mode): void {
  const touch = mode.startsWith("touch");
  const copy = mode.endsWith("copied");
  for (let t = 0; t < tiles; t++) {
    const base = kv + (mode === "cached" ? 0 : t) * 2 * tileBytes;
    let k = base, v = base + tileBytes;
    if (copy) u8.copyWithin(k = kt, base, base + tileBytes);
    if (touch) {
      K.scoresT(
        q,
        k,
        s,
        R,
        T,
        D,
        T,
        Math.min(base + AHEAD * 2 * tileBytes, kv + tiles * 2 * tileBytes),
      );
    } else K.scores(q, k, s, R, T, D, T, 0);
    K.smax(s, R, T, cnt, sum);
    K.pexp(s, R, T, cnt, mx, sum);
    if (copy) u8.copyWithin(v = vt, base + tileBytes, base + 2 * tileBytes);
    K.pv(s, v, o, al, cnt, R, D, T);
  }
}
const modes: Mode[] = ["copied", "in place", "touch, in place", "touch, copied", "cached"];
const times: Record<string, number[]> = {};
for (const m of modes) (times[m] = []), run(m);
for (let r = 0; r < rounds; r++) {
  for (const m of modes) {
    const t0 = performance.now();
    run(m);
    times[m].push(performance.now() - t0);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
for (const [m, ts] of Object.entries(times)) {
  console.log(`${m}: median ${median(ts).toFixed(2)} ms, min ${Math.min(...ts).toFixed(2)} ms`);
}
