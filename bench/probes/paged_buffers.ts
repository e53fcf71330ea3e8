// Paged lean decode by page-buffer count and K/V size (f16, D 128, Hq 32 / Hkv 8): is the
// slowdown of 16 GiB of K/V in 5 page buffers the per-load choice among buffers (then 4 GiB in
// 4–8 buffers is slow too) or the size (then it is not)? GPU time per call, median of timed
// blocks (timestamp queries), against contiguous lean (stored in parts where over a binding).
//     deno run -A --lock=deno.lock bench/probes/paged_buffers.ts
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { kvCache, leanAttention, randn, type Tensor } from "../../mod.ts";
import { allocStorage, tileInto } from "../_inputs.ts";
import { medianCallMs } from "./_gpu_time.ts";

const gpu = await webgpu();
console.log(gpu.description);
const [Hq, Hkv, D] = [32, 8, 128];

const time = (f: () => Tensor, reps: number) => medianCallMs(gpu, f, reps);

const block = randn([1 << 21], { seed: 1, dtype: "float16", backend: gpu });
// `--small`: tiny sizes, to try the probe on a software adapter.
const small = Deno.args.includes("--small");
const shapes = small ? [[1, 8192], [2, 4096]] : [[1, 1 << 20], [16, 1 << 18]];
for (const [B, N] of shapes) {
  const q = randn([B, Hq, 1, D], { seed: 2, dtype: "float16", backend: gpu });
  const k = allocStorage(gpu, [B, Hkv, N, D], "float16");
  tileInto(gpu, block, k);
  const tc = await time(() => leanAttention(q, k, k), 10);
  console.log(`B=${B} N=${N} contiguous (parts): ${tc.toFixed(3)} ms`);
  k.dispose();
  const C = 2048;
  const chunk = allocStorage(gpu, [B, Hkv, C, D], "float16");
  tileInto(gpu, block, chunk);
  for (const ps of [16, 256]) {
    const P = (B * N) / ps;
    const bytesPerPage = Hkv * ps * D * 2;
    const minBuffers = small ? 1 : Math.ceil((P * bytesPerPage) / gpu.partBytes);
    for (const nb of [minBuffers, 2 * minBuffers, 4 * minBuffers]) {
      if (nb > 15) continue;
      const cache = kvCache({
        batch: B,
        kvHeads: Hkv,
        headDim: D,
        pageSize: ps,
        capacity: B * N,
        dtype: "float16",
        backend: gpu,
        pagesPerBuffer: Math.ceil(P / nb),
      });
      for (let n = 0; n < N; n += C) cache.append(chunk, chunk);
      const tp = await time(() => leanAttention(q, cache), 10);
      console.log(
        `B=${B} N=${N} ps=${ps} buffers=${nb}: paged ${tp.toFixed(3)} ms = ${
          (100 * tc / tp).toFixed(1)
        } % of contiguous`,
      );
      cache.dispose();
    }
  }
  chunk.dispose();
  q.dispose();
}
gpu.destroy();
