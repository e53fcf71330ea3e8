/**
 * Default-choice probe: GPU time (the benchmark's chained, sparsely stamped timing of
 * bench/_timing.ts) of the library's lean, flash-decoding and flash ops on a few decode
 * shapes, over tile sizes and grids, and lean's default (the grid `leanGrid` chose for the
 * shape is printed in the JSON). Used to fit `leanAttention`'s WebGPU defaults; see
 * bench/NOTES.md.
 *
 *     deno run -A bench/probes/tune.ts [--json FILE]
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { leanAttention, leanAttentionSchedule } from "../../attention/lean.ts";
import { type Call, decodeInputs, gpuTimesInterleaved } from "../_timing.ts";
import { flashAttention } from "../../attention/flash.ts";
import type { Tensor } from "../../tensor/tensor.ts";

const gpu = await webgpu();
console.log(`adapter: ${gpu.description}`);
const sms = gpu.parallelism;
const K = Deno.args.includes("--tiny") ? 16 : 1024;
const shapes = [
  [1, 32, 8, 4 * K],
  [1, 32, 8, 16 * K],
  [1, 32, 8, 64 * K],
  [4, 32, 8, 16 * K],
  [16, 32, 8, 4 * K],
  [16, 32, 8, 16 * K],
  [1, 32, 32, 4 * K],
  [1, 32, 32, 16 * K],
  [1, 32, 32, 64 * K],
  [4, 32, 32, 4 * K],
  [4, 32, 32, 64 * K],
  [16, 32, 32, 4 * K],
];
const variants: [string, (q: Tensor, k: Tensor, v: Tensor) => Tensor][] = [];
for (const t of [64, 128]) {
  for (const g of [1, 2]) {
    variants.push([
      `lean t${t} g${g}`,
      (q, k, v) => leanAttention(q, k, v, { tileSize: t, grid: g * sms }),
    ]);
  }
}
// One worker a unit (B·Hkv): stream-K with runs that end on unit boundaries, one pass.
variants.push([
  "lean units",
  (q, k, v) => leanAttention(q, k, v, { grid: q.shape[0] * k.shape[1] }),
]);
variants.push(["lean default", (q, k, v) => leanAttention(q, k, v)]);
variants.push(["fd b64", (q, k, v) => flashAttention(q, k, v, { numSplits: "auto" })]);
variants.push(["flash", (q, k, v) => flashAttention(q, k, v)]);
const out: Record<string, unknown>[] = [];
for (const [B, Hq, Hkv, N] of shapes) {
  const { q, k, v, bytes } = decodeInputs(gpu, [B, Hq, Hkv, N]);
  // The benchmark's timing: one chain in one command buffer behind a heater, sparse stamps.
  const calls: Call[] = variants.map(([, f]) => (qq = q) => f(qq, k, v));
  const times = await gpuTimesInterleaved(gpu, calls, 20, 3);
  const cells: string[] = [];
  variants.forEach(([name], i) => {
    const t = times[i];
    if (!t) return;
    const grid = name === "lean default" ? leanAttentionSchedule(q, k, v).plan.grid : undefined;
    out.push({ B, Hq, Hkv, N, variant: name, ms: t.ms, sumMs: t.sumMs, passes: t.passes, grid });
    cells.push(`${name} ${(t.ms * 1e3).toFixed(1)}µs`);
  });
  console.log(
    `${B},${Hq},${Hkv},${N}: ${(bytes / 4.6e6).toFixed(0)}µs@4.6TB/s | ${cells.join(" | ")}`,
  );
  for (const t of [q, k, v]) t.dispose();
}
const i = Deno.args.indexOf("--json");
if (i >= 0) await Deno.writeTextFile(Deno.args[i + 1], JSON.stringify(out, null, 1));
