// Paged against contiguous lean attention on the GPU (decode, f16, D = 128, Hq 32 / Hkv 8):
// GPU time of each (median of timed calls, timestamp queries; pages hold arbitrary data).
//     deno run -A bench/probes/paged_speed.ts
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { tensor } from "../../tensor/creation.ts";
import { leanAttentionPlan } from "../../attention/lean.ts";
import type { AttentionPlan } from "../../schedule/attention_plan.ts";
import type { AttentionInputs, TensorInfo } from "../../backends/backend.ts";
import { pagedPlan, rng } from "../../tests/_paged.ts";
import { heatGpu } from "../_heater.ts";

const gpu = await webgpu();
console.log(gpu.description);
const info = (t: { id: unknown; shape: readonly number[]; dtype: string }) => t as TensorInfo;
const rand = (n: number, seed: number) => {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() - 0.5;
  return a;
};

async function time(f: () => void, reps: number): Promise<number> {
  f(); // warm: pipelines
  await gpu.read(gpu.upload(new Float32Array(4), "float32"), "float32", 4);
  const all: number[] = [];
  await heatGpu(gpu.ctx.device, 100, 1024);
  gpu.setProfiling(true);
  for (let i = 0; i < reps; i++) f();
  const t = await gpu.readTimings();
  gpu.setProfiling(false);
  // One call = its passes in order (main, maybe reduce): group by call.
  const per = t.length / reps;
  for (let i = 0; i < reps; i++) {
    all.push(t[i * per + per - 1].endNs! - t[i * per].startNs!);
  }
  all.sort((a, b) => a - b);
  return all[Math.floor(reps / 2)] / 1000;
}

const [Hq, Hkv, D] = [32, 8, 128];
for (const [B, N] of [[1, 16384], [1, 65536], [4, 16384], [16, 16384], [1, 262144]]) {
  for (const ps of [16, 256]) {
    const kvShape = [B, Hkv, N, D];
    const q = tensor(rand(B * Hq * D, 1), { shape: [B, Hq, 1, D], dtype: "float16", backend: gpu });
    const kd = rand(B * Hkv * N * D, 2);
    const k = tensor(kd, { shape: kvShape, dtype: "float16", backend: gpu });
    const v = tensor(kd, { shape: kvShape, dtype: "float16", backend: gpu });
    const kvLens = Array(B).fill(N);
    const plan: AttentionPlan = leanAttentionPlan(q, k, v, { kvLens });
    // Pages in a random order (one buffer): same bytes as contiguous.
    const P = (B * N) / ps;
    const perm = [...Array(P).keys()];
    const r = rng(7);
    for (let i = P - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    const pshape = [P, Hkv, ps, D];
    const kp = tensor(kd, { shape: pshape, dtype: "float16", backend: gpu });
    const vp = tensor(kd, { shape: pshape, dtype: "float16", backend: gpu });
    const bt = gpu.createIndexTable(Int32Array.from(perm));
    const layout = { pageSize: ps, maxBlocks: N / ps, pagesPerBuffer: P, buffers: 1, pages: P };
    const paged = pagedPlan(gpu, plan, layout);
    const pages = { kPages: [info(kp)], vPages: [info(vp)], blockTable: bt };
    const inputs: AttentionInputs = { pages };
    const runC = () => {
      const o = gpu.attention(info(q), info(k), info(v), plan);
      gpu.release(o.out);
      gpu.release(o.lse);
    };
    const runP = () => {
      const o = gpu.attention(info(q), info(kp), info(vp), paged, inputs);
      gpu.release(o.out);
      gpu.release(o.lse);
    };
    const tc = await time(runC, 30);
    const tp = await time(runP, 30);
    const tc2 = await time(runC, 30);
    const key = (paged.runs[0].prepared as { launch: { main: { key: string } } }).launch.main.key;
    console.log(
      `B=${B} N=${N} ps=${ps}: contiguous ${Math.min(tc, tc2).toFixed(1)} µs (${tc.toFixed(1)}/${
        tc2.toFixed(1)
      }), paged ${tp.toFixed(1)} µs, paged/contig speed ${
        (Math.min(tc, tc2) / tp * 100).toFixed(1)
      } %  ${key}`,
    );
    for (const t of [q, k, v, kp, vp]) t.dispose();
    gpu.release(bt);
  }
}
gpu.destroy();
