/**
 * Does touching the next K/V tile while the current one is computed (one load a cache line,
 * interleaved with `scores`) hide the stream? Compared with the executor's way (copy a tile to
 * scratch, then compute) and with plain in place. One memory, GQA-4 tiles of 64 keys, D = 128,
 * each tile's K and V adjacent (so one pointer covers the next tile's 64 KB).
 *
 * Run: `deno run -A bench/probes/cpu_touch_kernels.ts [units=8] [N=16384] [rounds=15] [lines=64] [ahead=1] [block|trip]`.
 */
import {
  F32X4_ADD,
  F32X4_MUL,
  get,
  type Madd,
  name,
  RELAXED_MADD,
  section,
  uleb,
  wasmModule,
} from "../../backends/cpu/_wasm_encoding.ts";
import { scores } from "../../backends/cpu/_wasm_scores.ts";
import { pv } from "../../backends/cpu/_wasm_pv.ts";
import { pexp } from "../../backends/cpu/_wasm_pexp.ts";
import { smax } from "../../backends/cpu/_wasm_smax.ts";
import { scoresTouch } from "../../backends/cpu/_wasm_scores.ts"; // needs the patch

const units = Number(Deno.args[0] ?? 8);
const N = Number(Deno.args[1] ?? 16384);
const rounds = Number(Deno.args[2] ?? 15);
const LINES = Number(Deno.args[3] ?? 64);
const AHEAD = Number(Deno.args[4] ?? 1);
const R = 4, D = 128, T = 64;
const madd: Madd = (acc) => [...get(acc), ...RELAXED_MADD];
void F32X4_ADD, F32X4_MUL;
const fns: [string, number[]][] = [
  ["scores", scores(madd)],
  ["scoresT", scoresTouch(madd, LINES, Deno.args[5] === "trip")],
  ["pv", pv(madd)],
  ["pexp", pexp(madd)],
  ["smax", smax()],
];
const type = [1, 0x60, 8, ...Array(8).fill(0x7f), 0];
const bytes = wasmModule(
  section(1, type),
  section(3, [fns.length, ...fns.map(() => 0)]),
  section(5, [1, 0x00, 1]),
  section(7, [
    ...uleb(fns.length + 1),
    ...name("mem"),
    0x02,
    0,
    ...fns.flatMap(([n], i) => [...name(n), 0x00, i]),
  ]),
  section(10, [...uleb(fns.length), ...fns.flatMap(([, c]) => c)]),
);
// deno-lint-ignore no-explicit-any
const K = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as any;
const tileBytes = T * D * 4;
const tiles = units * (N / T);
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
  tileBytes,
  tileBytes,
].map(take);
const kv = take((tiles + AHEAD) * 2 * tileBytes); // one spare tile: the last touch
const mem: WebAssembly.Memory = K.mem;
mem.grow(Math.ceil((at - mem.buffer.byteLength) / 65536));
const all = new Float32Array(mem.buffer);
let st = 1;
for (let i = 0; i < all.length; i++) {
  all[i] = ((st = (Math.imul(st, 1103515245) + 12345) | 0) >>> 0) / 2 ** 32 - 0.5;
}
new Int32Array(mem.buffer, cnt, R).fill(T);
new Float64Array(mem.buffer, al, R).fill(1);
new Float32Array(mem.buffer, mx, R).fill(1);
const u8 = new Uint8Array(mem.buffer);

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
