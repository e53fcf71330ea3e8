/**
 * How fast a CPU attention tile can be staged: 128 MiB copied into a kernel-sized scratch
 * memory in 64 KiB pieces by `TypedArray.prototype.set` from a SharedArrayBuffer (what CPU
 * storage was), from a plain ArrayBuffer, and by `memory.copy` out of a shared WebAssembly
 * memory (`backends/cpu/_wasm_copy.ts`, what storage from 1 MiB on is now). Median of 7
 * passes, two rounds. bench/NOTES.md, "Session 2026-12-06 (5)".
 *
 *     deno run -A bench/probes/cpu_copy.ts
 *
 * @module
 */
import { memoryCopy } from "../../backends/cpu/_wasm_copy.ts";

const N = 128 << 20, PIECE = 64 << 10;
const src = new WebAssembly.Memory({ initial: N / 65536, maximum: N / 65536, shared: true });
new Uint8Array(src.buffer).fill(3);
const scratch = new WebAssembly.Memory({ initial: 16 });
const copy = memoryCopy(scratch, src);
if (!copy) throw new Error("cpu_copy: this engine has no multi-memory memory.copy");
const shared = new Float32Array(src.buffer, 0, N / 4);
const plain = new Float32Array(N / 4).fill(1);
const dst = new Float32Array(scratch.buffer, 0, PIECE / 4);
const time = (what: string, pass: () => void) => {
  const ms: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t0 = performance.now();
    pass();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  console.log(`${what.padEnd(32)} ${ms[3].toFixed(1)} ms (min ${ms[0].toFixed(1)})`);
};
const f = PIECE / 4;
for (let round = 0; round < 2; round++) {
  time("set from SharedArrayBuffer", () => {
    for (let o = 0; o < N / 4; o += f) dst.set(shared.subarray(o, o + f));
  });
  time("set from ArrayBuffer", () => {
    for (let o = 0; o < N / 4; o += f) dst.set(plain.subarray(o, o + f));
  });
  time("memory.copy from shared memory", () => {
    for (let o = 0; o < N; o += PIECE) copy(0, o, PIECE);
  });
}
