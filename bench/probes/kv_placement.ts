/**
 * Is the (1,32,32) 64k anomaly of session 2026-12-07 (20) the data or where K/V lie in memory?
 * With K/V drawn whole on the host (`ablate.ts` before that session) lean's default grid of 256
 * took 396 µs on two H100 hosts and grids 240/264 363–365; with K/V tiled from a 2²¹-element
 * block on the GPU (the benchmark's inputs, and `decodeInputs` since) 256 took 363 and so did 240.
 * This times grids 256 and 264 over four inputs of one shape, in one process:
 *
 * - `whole`: K and V drawn whole (the old probe inputs);
 * - `whole+tiled`: the same buffers refilled with the tiled data (old placement, new data);
 * - `tiled`: new buffers filled with the tiled data (the benchmark's inputs);
 * - `tiled+whole`: those buffers refilled with `whole`'s values (new placement, old data).
 *
 * If the time follows the placement, the slow case is where the buffers lie; if it follows the
 * data, something in the kernel depends on the values (e.g. the running max's vote).
 *
 *     deno run -A --lock=deno.lock bench/probes/kv_placement.ts [B,Hq,Hkv,N]
 *
 * On a device host: `run` carrying .gpu, `source .gpu/setup.sh && deno run … > $OUT/placement.txt`.
 *
 * @module
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { leanAttention } from "../../attention/lean.ts";
import { type Call, decodeInputs, gpuTimesInterleaved } from "../_timing.ts";
import { allocStorage, tileInto } from "../_inputs.ts";
import { randn } from "../../tensor/creation.ts";
import type { Tensor } from "../../tensor/tensor.ts";

const [B, Hq, Hkv, N] = (Deno.args[0] ?? "1,32,32,65536").split(",").map(Number);
const D = 128;
const gpu = await webgpu();
console.log(`adapter: ${gpu.description}`);
const opts = { dtype: "float16" as const, backend: gpu };
const shape = [B, Hkv, N, D];
const q = randn([B, Hq, 1, D], { seed: 1, ...opts });

const t0 = performance.now();
const kWhole = randn(shape, { seed: 2, ...opts });
const vWhole = randn(shape, { seed: 3, ...opts });
console.log(`drawn whole in ${((performance.now() - t0) / 1e3).toFixed(1)} s`);
// The probes' inputs since session (20): K/V tiled from a block on the GPU (same seeds).
const tiled = decodeInputs(gpu, [B, Hq, Hkv, N], D);
tiled.q.dispose();
const { k: kTiled, v: vTiled } = tiled;
if (gpu.storageParts({ id: kTiled.id, shape, dtype: "float16" })) {
  throw new Error(`kv_placement: K/V of [${shape}] are stored in parts; take a smaller shape`);
}
// A copy of all of `src` into `dst` of the same size (one buffer each): a tiling of one block.
const copyInto = (src: Tensor, dst: Tensor) => tileInto(gpu, src, dst);

async function time(label: string, k: Tensor, v: Tensor): Promise<void> {
  const calls: Call[] = [256, 264].map((grid) => (qq = q) => leanAttention(qq, k, v, { grid }));
  const t = await gpuTimesInterleaved(gpu, calls, 20, 3);
  const cells = t.map((x, i) => `g${[256, 264][i]} ${x ? (x.ms * 1e3).toFixed(1) : "-"}`);
  console.log(`${label.padEnd(12)} µs: ${cells.join(" | ")}`);
}

await time("whole", kWhole, vWhole);
async function output(k: Tensor, v: Tensor): Promise<Float32Array> {
  const o = leanAttention(q, k, v, { grid: 256 });
  const data = await o.data();
  o.dispose();
  return data;
}
const wholeOut = await output(kWhole, vWhole);
await time("tiled", kTiled, vTiled);
// Old placement, new data: the whole-drawn buffers refilled with the tiling (a copy of the
// tiled tensors first, so the whole values survive for the last case).
const kKeep = allocStorage(gpu, shape, "float16");
const vKeep = allocStorage(gpu, shape, "float16");
copyInto(kWhole, kKeep);
copyInto(vWhole, vKeep);
copyInto(kTiled, kWhole);
copyInto(vTiled, vWhole);
await time("whole+tiled", kWhole, vWhole);
copyInto(kKeep, kTiled);
copyInto(vKeep, vTiled);
await time("tiled+whole", kTiled, vTiled);
// The copies moved the values: lean over tiled+whole gives whole's bits.
const again = await output(kTiled, vTiled);
const same = again.every((x, i) => Object.is(x, wholeOut[i]));
console.log(`tiled+whole gives whole's output bits: ${same}`);
await time("whole+tiled", kWhole, vWhole);
await time("tiled+whole", kTiled, vTiled);
for (const t of [q, kWhole, vWhole, kTiled, vTiled, kKeep, vKeep]) t.dispose();
