/**
 * Determinism stress of the attention ops on the GPU: for a few decode shapes, lean (default
 * grid) and flash-decoding (auto and fixed splits) run again and again on two different q's
 * in turn — so every call's pooled scratch still holds the other q's partial states — and
 * each result must be bit-identical to the first result of the same (algorithm, q). A unit
 * merged from a stale partial (a cache line read before its writer's store, a missing
 * ordering between dispatches) shows up as a result that differs between calls. Also prints
 * each algorithm's largest difference from flash. Exits 1 on any nondeterministic call.
 *
 *     deno run -A bench/probes/determinism.ts [--iters 12] [--big] [--part-bytes B]
 *
 * `--big` adds the benchmark's (1,64,64) N = 512k case (K/V in parts over one binding);
 * `--part-bytes` stores K/V over B bytes in parts (as the backend option).
 *
 * @module
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { randn } from "../../tensor/creation.ts";
import { leanAttention } from "../../attention/lean.ts";
import { flashAttention } from "../../attention/flash.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import { allocStorage, tileInto } from "../_inputs.ts";

const arg = (name: string, def: number) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : def;
};
const iters = arg("--iters", 12);
const split = arg("--part-bytes", 0);
const gpu = await webgpu(split > 0 ? { partBytes: split } : {});
console.log(`adapter: ${gpu.description}`);
const K = gpu.description.includes("llvmpipe") ? 64 : 1024;
const shapes = [
  [1, 32, 32, 4 * K],
  [1, 64, 64, 64 * K],
  [1, 32, 8, 16 * K],
  [4, 32, 8, 16 * K],
  [1, 32, 8, 64 * K],
  [16, 32, 32, 1 * K],
];
if (Deno.args.includes("--big")) shapes.push([1, 64, 64, 512 * K]);
type F = (q: Tensor, k: Tensor, v: Tensor) => Tensor;

/** Period of K and V: not a multiple of a head's keys, so no two heads or parts read alike. */
const BLOCK = 3 << 19;

/**
 * K or V `[B, Hkv, N, D]` (float16, stored across buffers where the runtime splits it): a
 * tiling of one seeded `randn` block, copied on the GPU (no host array of the whole size).
 */
function tiled(shape: number[], seed: number): Tensor {
  const base = randn([BLOCK], { seed, dtype: "float16", backend: gpu });
  const t = allocStorage(gpu, shape, "float16");
  tileInto(gpu, base, t);
  base.dispose();
  return t;
}
const algos: [string, F][] = [
  ["lean", (q, k, v) => leanAttention(q, k, v) as Tensor],
  ["fd", (q, k, v) => flashAttention(q, k, v, { numSplits: "auto" }) as Tensor],
  ["fd3", (q, k, v) => flashAttention(q, k, v, { numSplits: 3 }) as Tensor],
  ["fd7", (q, k, v) => flashAttention(q, k, v, { numSplits: 7 }) as Tensor],
  ["flash", (q, k, v) => flashAttention(q, k, v) as Tensor],
];
let bad = 0;
for (const [B, Hq, Hkv, N] of shapes) {
  const D = 128;
  const t0 = performance.now();
  const qs = [1, 4].map((seed) => randn([B, Hq, 1, D], { seed, dtype: "float16", backend: gpu }));
  const k = tiled([B, Hkv, N, D], 2);
  const v = tiled([B, Hkv, N, D], 3);
  const first = new Map<string, Float32Array>();
  const off = new Map<string, number>();
  for (let it = 0; it < iters; it++) {
    for (const [name, f] of algos) {
      for (const [j, q] of qs.entries()) {
        const o = f(q, k, v);
        const d = await o.data();
        o.dispose();
        const key = `${name}/${j}`;
        const f0 = first.get(key);
        if (!f0) {
          first.set(key, d);
          continue;
        }
        let n = 0;
        let max = 0;
        for (let i = 0; i < d.length; i++) {
          if (d[i] !== f0[i] && !(d[i] !== d[i] && f0[i] !== f0[i])) {
            n++;
            max = Math.max(max, Math.abs(d[i] - f0[i]));
          }
        }
        if (n > 0) {
          bad++;
          off.set(key, (off.get(key) ?? 0) + 1);
          console.log(
            `  (${B},${Hq},${Hkv}) N=${N} ${key} call ${it}: ${n} of ${d.length} values differ ` +
              `from its first call (max ${max.toExponential(2)})`,
          );
        }
      }
    }
  }
  const vsFlash = algos.map(([name]) => {
    let m = 0;
    for (const j of [0, 1]) {
      const a = first.get(`${name}/${j}`)!;
      const b = first.get(`flash/${j}`)!;
      for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
    }
    return `${name} ${m.toExponential(1)}`;
  });
  console.log(
    `(${B},${Hq},${Hkv}) N=${N}: ${iters} rounds × ${algos.length} algos × 2 q; ` +
      `nondeterministic: ${[...off].map(([k, n]) => `${k} ${n}`).join(", ") || "none"}; ` +
      `vs flash: ${vsFlash.join(", ")} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  for (const t of [...qs, k, v]) t.dispose();
}
gpu.destroy();
console.log(bad === 0 ? "deterministic: every call matched its first" : `FAILED: ${bad} calls`);
if (bad > 0) Deno.exit(1);
