/**
 * Where a kernel change gives NaN in batch-invariant piece runs (session 2026-12-07 (18), for
 * `merge_unroll.sh`): lean, `batchInvariant`, grid 1, two-row units (Hq 4, Hkv 2), seeded inputs,
 * with piece runs on and off; prints the NaN positions of out and lse for D 32, 64 and 128. The
 * unrolled subgroup merge under `if (act)` gave NaN everywhere at D = 32 with runs on, on an H100.
 *
 *     deno run -A bench/probes/merge_nan_probe.ts
 *
 * @module
 */
import { leanAttention, webgpu } from "../../mod.ts";
import { tensor } from "../../tensor/creation.ts";
import { randomArray } from "../../tests/_paged.ts";
import { subgroupMinSize } from "../../backends/webgpu/attention/subgroup_config.ts";

const gpu = await webgpu();
console.log(`adapter: ${gpu.ctx.description}, subgroupMinSize ${subgroupMinSize(gpu.ctx)}`);
const cases: [string, number, number | undefined, number[]][] = [
  ["float32", 32, undefined, [257]],
  ["float32", 32, undefined, [300]],
  ["float32", 64, undefined, [257]],
  ["float32", 128, undefined, [257]],
  ["float16", 32, 64, [257]],
  ["float32", 32, undefined, [512]],
  ["float32", 32, undefined, [256]],
];
for (const [dtype, D, wg, lens] of cases) {
  const [Hq, Hkv] = [4, 2];
  const B = lens.length, N = Math.max(...lens);
  const mk = (n: number, shape: number[], s: number) =>
    tensor(randomArray(n, s), { shape, dtype: dtype as "float32", backend: gpu });
  const q = mk(B * Hq * D, [B, Hq, 1, D], 1);
  const k = mk(B * Hkv * N * D, [B, Hkv, N, D], 2);
  const v = mk(B * Hkv * N * D, [B, Hkv, N, D], 3);
  const opts = { kvLens: lens, returnLse: true as const, batchInvariant: true, grid: 1 };
  const lines: string[] = [];
  for (const pieceRuns of [true, false]) {
    gpu.attentionTuning = { pieceRuns, ...(wg ? { wg } : {}) };
    const r = leanAttention(q, k, v, opts);
    const out = await r.out.data() as Float32Array, lse = await r.lse.data() as Float32Array;
    const nan = (a: Float32Array) => [...a.keys()].filter((i) => Number.isNaN(a[i]));
    const no = nan(out);
    lines.push(
      `runs ${pieceRuns}: out NaN at ${no.length ? `${no.slice(0, 8)} (${no.length})` : "-"}` +
        ` lse ${Array.from(lse, (x) => x.toFixed(3))} NaN at ${nan(lse).join(",") || "-"}`,
    );
    r.out.dispose();
    r.lse.dispose();
  }
  console.log(`${dtype} D${D} wg ${wg ?? "default"} lens ${lens}:\n  ${lines.join("\n  ")}`);
  for (const x of [q, k, v]) x.dispose();
}
gpu.attentionTuning = {};
