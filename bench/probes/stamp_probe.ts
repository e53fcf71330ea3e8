/**
 * How much do per-pass timestamps cost a chained call? For a few decode shapes, a chain of
 * calls (q = previous output) in one command buffer behind a heater is timed two ways:
 * `stamped` — every pass stamped, a call = its last end minus the previous call's last end
 * (what `deno task bench` reports); `sparse` — only the last pass before and the last pass of
 * a block of calls stamped, a call = the block's span / its length.
 *
 *     deno run -A bench/probes/stamp_probe.ts
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { randn } from "../../tensor/creation.ts";
import { leanAttention } from "../../attention/lean.ts";
import { flashAttention } from "../../attention/flash.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import { heatGpu } from "../_heater.ts";
import { median } from "../_ceiling.ts";

const gpu = await webgpu();
console.log(`adapter: ${gpu.description}`);
const K = Deno.args.includes("--tiny") ? 16 : 1024;
const shapes = [[1, 32, 32, 4 * K], [1, 32, 8, 4 * K], [4, 32, 8, 16 * K], [1, 32, 32, 64 * K]];
type F = (q: Tensor, k: Tensor, v: Tensor) => Tensor;
const algos: [string, F][] = [
  ["lean", (q, k, v) => leanAttention(q, k, v)],
  ["fd", (q, k, v) => flashAttention(q, k, v, { numSplits: "auto" })],
  ["flash", (q, k, v) => flashAttention(q, k, v)],
];
const BLOCK = 25;
for (const [B, Hq, Hkv, N] of shapes) {
  const D = 128;
  const q0 = randn([B, Hq, 1, D], { seed: 1, dtype: "float16", backend: gpu });
  const k = randn([B, Hkv, N, D], { seed: 2, dtype: "float16", backend: gpu });
  const v = randn([B, Hkv, N, D], { seed: 3, dtype: "float16", backend: gpu });
  const cells: string[] = [];
  for (const [name, f] of algos) {
    const res: Record<string, number[]> = { stamped: [], sparse: [] };
    for (let round = 0; round < 4; round++) {
      for (const mode of ["stamped", "sparse"] as const) {
        gpu.flush();
        await gpu.readTimings();
        gpu.holdSubmits(true);
        let cur: Tensor = f(q0, k, v);
        // One call ahead (stamped in both modes: the block's start), then the block.
        gpu.setProfiling(true);
        let next = f(cur, k, v);
        cur.dispose();
        cur = next;
        for (let i = 0; i < BLOCK; i++) {
          gpu.setProfiling(mode === "stamped" || i === BLOCK - 1);
          next = f(cur, k, v);
          cur.dispose();
          cur = next;
        }
        gpu.setProfiling(false);
        await heatGpu(gpu.ctx.device, 100, 8 * gpu.parallelism);
        gpu.holdSubmits(false);
        gpu.flush();
        gpu.setProfiling(true);
        const t = await gpu.readTimings();
        gpu.setProfiling(false);
        cur.dispose();
        if (mode === "sparse") {
          // t: the call ahead's passes, then the last call's passes.
          const per = t.length / 2;
          const span = (t[t.length - 1].endNs! - t[per - 1].endNs!) / 1e6;
          res.sparse.push(span / BLOCK);
        } else {
          const per = t.length / (BLOCK + 1);
          const ends = [];
          for (let i = 0; i <= BLOCK; i++) ends.push(t[(i + 1) * per - 1].endNs!);
          for (let i = 1; i <= BLOCK; i++) res.stamped.push((ends[i] - ends[i - 1]) / 1e6);
        }
      }
    }
    const st = median(res.stamped) * 1e3;
    const sp = median(res.sparse) * 1e3;
    cells.push(`${name} stamped ${st.toFixed(1)} sparse ${sp.toFixed(1)} µs`);
  }
  console.log(`${B},${Hq},${Hkv},${N}: ${cells.join(" | ")}`);
  for (const t of [q0, k, v]) t.dispose();
}
