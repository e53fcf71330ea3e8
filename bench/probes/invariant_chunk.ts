// The cost of batchInvariant by piece length (f16, D 128, decode): pieces are
// ceil(2048 / tileSize) tiles, so tileSize 64 gives 2048-key pieces (the default), 4096 and
// 8192 one-tile pieces of that many keys. GPU time per call (median, timestamp queries)
// against plain lean.
//     deno run -A --lock=deno.lock bench/probes/invariant_chunk.ts [--small]
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { leanAttention, randn, type Tensor } from "../../mod.ts";
import { allocStorage, tileInto } from "../_inputs.ts";
import { medianCallMs } from "./_gpu_time.ts";

const gpu = await webgpu();
console.log(gpu.description);
const small = Deno.args.includes("--small");
const D = 128;

const time = (f: () => Tensor, reps: number) => medianCallMs(gpu, f, reps);

const block = randn([1 << 21], { seed: 1, dtype: "float16", backend: gpu });
const shapes = small
  ? [[1, 32, 8, 8192]]
  : [[1, 32, 8, 16384], [1, 32, 8, 65536], [1, 32, 8, 262144], [4, 32, 8, 65536], [
    16,
    32,
    8,
    16384,
  ], [1, 32, 32, 65536]];
for (const [B, Hq, Hkv, N] of shapes) {
  const q = randn([B, Hq, 1, D], { seed: 2, dtype: "float16", backend: gpu });
  const k = allocStorage(gpu, [B, Hkv, N, D], "float16");
  tileInto(gpu, block, k);
  const base = await time(() => leanAttention(q, k, k), 30);
  const parts = [`(${B},${Hq},${Hkv}) N=${N}: lean ${base.toFixed(4)} ms`];
  for (const tileSize of [64, 4096, 8192]) {
    const t = await time(() => leanAttention(q, k, k, { batchInvariant: true, tileSize }), 30);
    parts.push(
      `inv/${Math.max(2048, tileSize)} ${t.toFixed(4)} (+${(100 * (t / base - 1)).toFixed(1)} %)`,
    );
  }
  console.log(parts.join(" | "));
  k.dispose();
  q.dispose();
}
gpu.destroy();
