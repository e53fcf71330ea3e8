/**
 * The per-call floor of a chain: GPU time a call of tiny ops takes in the benchmark's timing
 * (bench/_timing.ts: one chained command buffer behind a heater, sparse stamps), where the
 * work itself is negligible — the dispatch, the barrier wgpu puts between dependent dispatches
 * and a kernel's own shortest path (q loaded, one K/V round trip, the merges, the write).
 * Small attention calls cannot go below it.
 *
 *     deno run -A bench/probes/floor.ts [--json FILE]
 *
 * @module
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { leanAttention } from "../../attention/lean.ts";
import { flashAttention } from "../../attention/flash.ts";
import { neg } from "../../ops/unary.ts";
import { randn } from "../../tensor/creation.ts";
import { type Call, gpuTimesInterleaved } from "../_timing.ts";

const gpu = await webgpu();
console.log(`adapter: ${gpu.description}`);
const opts = { dtype: "float16" as const, backend: gpu };
const x = randn([1, 32, 1, 128], { seed: 1, ...opts });
const kv = (hkv: number, n: number, seed: number) => randn([1, hkv, n, 128], { seed, ...opts });
const [k32, v32, k8, v8] = [kv(32, 64, 2), kv(32, 64, 3), kv(8, 64, 4), kv(8, 64, 5)];
const cases: [string, Call][] = [
  ["neg (one elementwise dispatch, 4096 halves)", (q = x) => neg(q)],
  ["flash, (1,32,32) N=64: one pass, 32 workgroups", (q = x) => flashAttention(q, k32, v32)],
  ["flash, (1,32,8) N=64: one pass, 8 workgroups", (q = x) => flashAttention(q, k8, v8)],
  [
    "lean, (1,32,8) N=64, grid 16: 8 units cut in two, merged in the kernel",
    (q = x) => leanAttention(q, k8, v8, { grid: 16, tileSize: 16 }),
  ],
];
const times = await gpuTimesInterleaved(gpu, cases.map(([, c]) => c), 20, 3);
const out = cases.map(([name], i) => ({ name, us: times[i] ? times[i]!.ms * 1e3 : null }));
for (const r of out) console.log(`${r.us?.toFixed(1).padStart(6)} µs  ${r.name}`);
const ji = Deno.args.indexOf("--json");
if (ji >= 0) await Deno.writeTextFile(Deno.args[ji + 1], JSON.stringify(out, null, 1));
