/**
 * Would touch-ahead help the CPU attention's staged tiles? A synthetic tile loop: 64 KiB (a
 * tile's K and V) copied from a 256 MiB shared WebAssembly memory into scratch by
 * `memory.copy` (as the executor stages now), then a compute loop over the scratch (an f32x4
 * multiply-add chain, `iters` steps, about a tile's arithmetic); with touch-ahead the compute
 * loop also loads one i32 every `stride` bytes of the next tile from the source memory
 * (multi-memory), so that its copy would hit cache. Prints compute alone, copy alone, and the
 * loop without and with the touches (median of 5). bench/NOTES.md, "Session 2026-12-06 (5)".
 *
 *     deno run -A bench/probes/cpu_touch.ts [iters=4000] [stride=64]
 *
 * @module
 */
import {
  addTo,
  body,
  F32X4_ADD,
  F32X4_MUL,
  get,
  I32_AND,
  I32_LT_S,
  I32_MUL,
  i32c,
  memoryImport,
  name,
  section,
  set,
  v128Load,
  v128Store,
  wasmModule,
  whileLoop,
} from "../../backends/cpu/_wasm_encoding.ts";
import { memoryCopy } from "../../backends/cpu/_wasm_copy.ts";

const STRIDE = Number(Deno.args[1] ?? 64);
const I32_XOR = [0x73];
// memory 0: scratch (imported, unshared); memory 1: src (imported, shared).
// fn compute(iters, tp, tlines, unused): v128 mul-add chain over scratch[0..32K) for `iters`
// steps; every fourth step, while tlines > 0, one i32 of memory 1 at tp, then tp += STRIDE.
const [iters, tp, tl] = [0, 1, 2]; // param 3 unused
const [i, acc, a2] = [4, 5, 6]; // local 7 unused
const [v0, v1, v2, v3] = [8, 9, 10, 11];
const loadM1 = [0x28, 0x42, 1, 0]; // i32.load with memidx: align flag bit 6 set → memidx follows
const computeBody = body(
  4,
  4,
  [
    ...i32c(0),
    ...set(i),
    ...i32c(0),
    ...set(acc),
    ...whileLoop(
      [...get(i), ...get(iters), ...I32_LT_S],
      [
        // addr = (i*16) & 32767
        ...get(i),
        ...i32c(16),
        ...I32_MUL,
        ...i32c(32767),
        ...I32_AND,
        ...set(a2),
        ...get(a2),
        ...v128Load(0),
        ...set(v0),
        ...get(a2),
        ...v128Load(16),
        ...set(v1),
        ...get(v0),
        ...get(v1),
        ...F32X4_MUL,
        ...get(v2),
        ...F32X4_ADD,
        ...set(v2),
        ...get(v1),
        ...get(v0),
        ...F32X4_MUL,
        ...get(v3),
        ...F32X4_ADD,
        ...set(v3),
        // every 4th iteration (i & 3 == 0) and tl > 0: touch
        ...get(i),
        ...i32c(3),
        ...I32_AND,
        [0x45],
        0x04,
        0x40, // if (i&3)==0
        ...get(tl),
        ...i32c(0),
        [0x4a],
        0x04,
        0x40, // if tl > 0
        ...get(acc),
        ...get(tp),
        ...loadM1,
        ...I32_XOR,
        ...set(acc),
        ...addTo(tp, i32c(STRIDE)),
        ...addTo(tl, i32c(-1)),
        0x0b,
        0x0b,
        ...addTo(i, i32c(1)),
      ].flat(),
    ),
    ...i32c(0),
    ...get(v2),
    ...get(v3),
    ...F32X4_ADD,
    ...v128Store(32768),
    ...i32c(32784),
    ...get(acc),
    0x36,
    2,
    0, // i32.store
  ].flat(),
);
const bytes = wasmModule(
  section(1, [1, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 0]),
  section(2, [2, ...memoryImport("m", "s", false), ...memoryImport("m", "src", true)]),
  section(3, [1, 0]),
  section(7, [1, ...name("compute"), 0, 0]),
  section(10, [1, ...computeBody]),
);
const N = 256 << 20;
const src = new WebAssembly.Memory({ initial: N / 65536, maximum: N / 65536, shared: true });
new Uint8Array(src.buffer).fill(1);
const s = new WebAssembly.Memory({ initial: 8 });
const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { m: { s, src } });
const compute = inst.exports.compute as (a: number, b: number, c: number, d: number) => void;
const copy = memoryCopy(s, src)!; // the executor's staging copy (backends/cpu/_wasm_copy.ts)
const TILE = 64 * 1024; // K+V of a tile
const ITERS = Number(Deno.args[0] ?? 4000);
const t = (label: string, touch: boolean) => {
  const ms: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    for (let o = 0; o + TILE < N; o += TILE) {
      copy(131072, o, TILE); // stage this tile (into scratch at 128 KiB)
      compute(ITERS, o + TILE, touch ? TILE / STRIDE : 0, 0); // compute, touching the next tile
    }
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  console.log(`${label}: ${ms[2].toFixed(1)} ms`);
};
const compOnly = () => {
  const t0 = performance.now();
  for (let o = 0; o + TILE < N; o += TILE) compute(ITERS, 0, 0, 0);
  return performance.now() - t0;
};
const copyOnly = () => {
  const t0 = performance.now();
  for (let o = 0; o + TILE < N; o += TILE) copy(131072, o, TILE);
  return performance.now() - t0;
};
for (let r = 0; r < 2; r++) {
  console.log(`compute only ${compOnly().toFixed(1)} ms, copy only ${copyOnly().toFixed(1)} ms`);
  t("copy + compute", false);
  t("copy + compute touching next", true);
}
