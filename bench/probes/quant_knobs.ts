// Quantized lean decode (f16 q, D 128) under kernel knobs: is grouped-query int8 decode held
// back by its 8-byte loads (16 lanes a key) or by its arithmetic? GPU time per call (median,
// timestamp queries) of float16, int8 and e4m3 K/V with the default knobs and `{ L: 8 }`.
//     deno run -A --lock=deno.lock bench/probes/quant_knobs.ts [--small]
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { leanAttention, quantize, randn } from "../../mod.ts";
import { allocStorage, tileInto } from "../_inputs.ts";
import { medianCallMs } from "./_gpu_time.ts";

const gpu = await webgpu();
console.log(gpu.description);
const small = Deno.args.includes("--small");
const D = 128;
const block = randn([1 << 21], { seed: 1, dtype: "float16", backend: gpu });
const shapes = small
  ? [[1, 32, 8, 4096]]
  : [[1, 32, 8, 65536], [1, 32, 8, 262144], [4, 32, 8, 65536]];
for (const [B, Hq, Hkv, N] of shapes) {
  const q = randn([B, Hq, 1, D], { seed: 2, dtype: "float16", backend: gpu });
  const k = allocStorage(gpu, [B, Hkv, N, D], "float16");
  const v = allocStorage(gpu, [B, Hkv, N, D], "float16");
  tileInto(gpu, block, k);
  tileInto(gpu, block, v);
  const line = [`(${B},${Hq},${Hkv}) N=${N}:`];
  for (const tuning of [{}, { L: 8 }]) {
    gpu.attentionTuning = tuning;
    const f16 = await medianCallMs(gpu, () => leanAttention(q, k, v), 20);
    line.push(`${JSON.stringify(tuning)} f16 ${f16.toFixed(4)}`);
    for (const dtype of ["int8", "float8e4m3"] as const) {
      const kq = quantize(k, { dtype }), vq = quantize(v, { dtype });
      const t = await medianCallMs(gpu, () => leanAttention(q, kq, vq), 20);
      line.push(`${dtype} ${t.toFixed(4)} (${(t / f16).toFixed(2)}×)`);
      for (const x of [kq, vq]) {
        x.data.dispose();
        x.scale.dispose();
      }
    }
  }
  gpu.attentionTuning = {};
  console.log(line.join(" | "));
  for (const t of [q, k, v]) t.dispose();
}
gpu.destroy();
