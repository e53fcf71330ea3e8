/**
 * Time per call of `leanAttention` and `flashAttention` on the CPU backend (in-thread
 * executor, one query token), for the two decode shapes the CPU segment-walk refactor
 * (issue #14) was held to: (B, Hq, Hkv, N, D) = (1, 32, 8, 16384, 128) float32 and
 * (4, 8, 8, 4096, 64) float16. Prints the median of the repeats in ms and a hash of the
 * output and lse bits, so two checkouts can be compared for speed and for bit identity.
 *
 * Run: `deno run -A bench/probes/cpu_walk_timing.ts [repeats=21]`. The machine should be
 * otherwise idle; compare only runs on the same machine, ideally alternating the checkouts.
 *
 * @module
 */
import { cpu } from "../../backends/cpu/cpu_backend.ts";
import { randn } from "../../tensor/creation.ts";
import type { DType } from "../../tensor/dtype.ts";
import { leanAttention } from "../../attention/lean.ts";
import { flashAttention } from "../../attention/flash.ts";

const repeats = Number(Deno.args[0] ?? 21);
const shapes: [number, number, number, number, number, DType][] = [
  [1, 32, 8, 16384, 128, "float32"],
  [4, 8, 8, 4096, 64, "float16"],
];

/** FNV-1a over the float32 bits: equal hashes mean (almost surely) equal bits. */
function hashBits(...arrays: Float32Array[]): string {
  let h = 0x811c9dc5;
  for (const a of arrays) {
    for (const w of new Uint32Array(a.buffer, a.byteOffset, a.length)) {
      h = Math.imul(h ^ w, 0x01000193) >>> 0;
    }
  }
  return h.toString(16).padStart(8, "0");
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const be = cpu();
for (const [B, Hq, Hkv, N, D, dtype] of shapes) {
  const q = randn([B, Hq, 1, D], { seed: 1, dtype, backend: be });
  const k = randn([B, Hkv, N, D], { seed: 2, dtype, backend: be });
  const v = randn([B, Hkv, N, D], { seed: 3, dtype, backend: be });
  const ops = {
    lean: () => leanAttention(q, k, v, { returnLse: true }),
    flash: () => flashAttention(q, k, v, { returnLse: true }),
  };
  for (const [name, op] of Object.entries(ops)) {
    const times: number[] = [];
    let hash = "";
    for (let i = -2; i < repeats; i++) { // two warm-up calls
      const t0 = performance.now();
      const r = op();
      const t = performance.now() - t0;
      if (i >= 0) times.push(t);
      if (i === -1) hash = hashBits(await r.out.data(), await r.lse.data());
      r.out.dispose();
      r.lse.dispose();
    }
    const shape = `(${B},${Hq},${Hkv},${N},${D}) ${dtype}`;
    console.log(
      `${name.padEnd(5)} ${shape.padEnd(30)} median ${median(times).toFixed(2)} ms ` +
        `(min ${Math.min(...times).toFixed(2)}, n=${repeats})  bits ${hash}`,
    );
  }
  q.dispose();
  k.dispose();
  v.dispose();
}
