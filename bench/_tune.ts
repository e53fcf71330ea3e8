/**
 * Default-choice probe: GPU time (timestamp span, median of 20) of the library's lean and
 * flash-decoding ops on a few decode shapes, over tile sizes and grids, with the time of each
 * pass. Used to pick `leanAttention`'s WebGPU defaults; see bench/NOTES.md.
 *
 *     deno run -A bench/_tune.ts [--json FILE]
 */
import { webgpu } from "../backends/webgpu/webgpu_backend.ts";
import { randn } from "../tensor/creation.ts";
import { leanAttention } from "../attention/lean.ts";
import { flashAttention } from "../attention/flash.ts";
import type { Tensor } from "../tensor/tensor.ts";

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
  const D = 128;
  const q = randn([B, Hq, 1, D], { seed: 1, dtype: "float16", backend: gpu });
  const k = randn([B, Hkv, N, D], { seed: 2, dtype: "float16", backend: gpu });
  const v = randn([B, Hkv, N, D], { seed: 3, dtype: "float16", backend: gpu });
  const bytes = 2 * B * Hkv * N * D * 2;
  const cells: string[] = [];
  for (const [name, f] of variants) {
    // Keep the GPU busy 150 ms first: an idle datacenter GPU runs at a low clock (NOTES).
    const t0 = performance.now();
    while (performance.now() - t0 < 150) {
      for (let i = 0; i < 8; i++) f(q, k, v).dispose();
      gpu.flush();
      await gpu.ctx.device.queue.onSubmittedWorkDone();
    }
    gpu.setProfiling(true);
    await gpu.readTimings();
    const spans: number[] = [];
    const passMs: number[][] = [];
    for (let i = 0; i < 20; i++) {
      f(q, k, v).dispose();
      const t = await gpu.readTimings();
      spans.push((t[t.length - 1].endNs! - t[0].startNs!) / 1e6);
      passMs.push(t.map((p) => p.ms));
    }
    gpu.setProfiling(false);
    spans.sort((a, b) => a - b);
    const ms = spans[10];
    const p0 = passMs.map((p) => p[0]).sort((a, b) => a - b)[10];
    const p1 = passMs.map((p) => p[1] ?? 0).sort((a, b) => a - b)[10];
    out.push({ B, Hq, Hkv, N, variant: name, ms, mainMs: p0, reduceMs: p1, GBs: bytes / ms / 1e6 });
    cells.push(`${name} ${(ms * 1e3).toFixed(0)}µs (${p0 * 1e3 | 0}+${p1 * 1e3 | 0})`);
  }
  console.log(
    `${B},${Hq},${Hkv},${N}: ${(bytes / 4.6e6).toFixed(0)}µs@4.6TB/s | ${cells.join(" | ")}`,
  );
  for (const t of [q, k, v]) t.dispose();
}
const i = Deno.args.indexOf("--json");
if (i >= 0) await Deno.writeTextFile(Deno.args[i + 1], JSON.stringify(out, null, 1));
