// What does a segment boundary cost a GQA worker, with and without the piece merge? Same bytes
// (16·8 units of 16k keys, or 256·8 units of 1k keys), f16, D 128, decode, GPU time (timestamp
// queries, median of 30):
//   lean (16,32,8) 16k          one segment a worker (128 workers)
//   invariant (16,32,8) 16k     16 pieces of 1024 keys a worker, each publishing a state to merge
//   lean (256,32,8) 1k, grid 128  16 whole units of 1024 keys a worker: segment restarts, no merge
//   flash (256,32,8) 1k          one workgroup a unit
// (the per-segment cost is (time − lean 16k) / 16 on one worker's timeline).
//     deno run -A --lock=deno.lock bench/probes/segment_cost.ts [--small] [--tune JSON]
//       [--abl l1|nobar|epkv|epkvopq]
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { flashAttention, leanAttention, randn, type Tensor } from "../../mod.ts";
import { allocStorage, tileInto } from "../_inputs.ts";
import { medianCallMs } from "./_gpu_time.ts";
import { ablate } from "./ablate.ts";
import { editSubgroupKernels } from "./_sg_edit.ts";
import { hoist } from "./_hoist_loads.ts";

const gpu = await webgpu();
console.log(gpu.description);
const D = 128;
const blockK = randn([1 << 21], { seed: 1, dtype: "float16", backend: gpu });
const blockV = randn([1 << 21], { seed: 3, dtype: "float16", backend: gpu });
const inputs = (B: number, N: number) => {
  const q = randn([B, 32, 1, D], { seed: 2, dtype: "float16", backend: gpu });
  const k = allocStorage(gpu, [B, 8, N, D], "float16");
  const v = allocStorage(gpu, [B, 8, N, D], "float16");
  tileInto(gpu, blockK, k);
  tileInto(gpu, blockV, v);
  return [q, k, v] as const;
};
const time = (f: () => Tensor) => medianCallMs(gpu, f, 30);
// `--tune '{"U":4}'`: kernel knobs (`AttentionTuning`) for every call.
const ti = Deno.args.indexOf("--tune");
if (ti >= 0) gpu.attentionTuning = JSON.parse(Deno.args[ti + 1]);
// `--abl l1` / `--abl nobar` (timing only, wrong results): the key loop's K/V loads from the
// first 1024 words of their buffers (ablate.ts's `l1`: no DRAM round trip for a segment's first
// batch either), or every workgroup barrier after the key loop removed (the end-of-segment
// merge without its waits). `--abl epkv`: the next segment's first K/V batch loaded before the
// merge (_hoist_loads.ts, form `next`). It should keep the bits, so each call's output is compared
// with the unedited kernel's (on the H100 they differed: bench/NOTES.md, session 9).
// `--abl epkvopq`: the same with the NaN tests' constants read at run time (form `next+opq`).
const ai = Deno.args.indexOf("--abl");
const abl = ai >= 0 ? Deno.args[ai + 1] : "";
let editOn = true;
if (abl) {
  const edit = (code: string) => {
    if (abl === "l1") return ablate(code, ["l1"]);
    if (abl === "epkv") return hoist(code, true, false, false, "next");
    if (abl === "epkvopq") return hoist(code, true, false, false, "next+opq");
    if (abl !== "nobar") throw new Error(`segment_cost: unknown --abl ${abl}`);
    const lines = code.split("\n");
    const b = lines.findIndex((l) => l.includes("let badw = subgroupOr(bad);"));
    if (b < 0) throw new Error("segment_cost: key loop end not found");
    return lines.map((l, i) => i > b && l.trim() === "workgroupBarrier();" ? "" : l).join("\n");
  };
  editSubgroupKernels(gpu.ctx, () => editOn ? { tag: `abl-${abl}`, edit } : null);
}
/** For `--abl epkv`: how many of `f`'s outputs differ between the edited and unedited kernel. */
const differ = async (f: () => Tensor): Promise<string> => {
  if (!abl.startsWith("epkv")) return "";
  const out: Float32Array[] = [];
  for (const on of [false, true]) {
    editOn = on;
    const o = f();
    out.push(Float32Array.from(await o.data()));
    o.dispose();
  }
  editOn = true;
  const n = out[0].filter((x, i) => !Object.is(x, out[1][i])).length;
  return `  bits: ${n}/${out[0].length} differ from the unedited kernel`;
};
// `--small`: 16× fewer keys (a smoke run on a software adapter).
const s = Deno.args.includes("--small") ? 16 : 1;
const [q1, k1, v1] = inputs(16, 16384 / s);
const lean16k = await time(() => leanAttention(q1, k1, v1));
const inv16k = await time(() => leanAttention(q1, k1, v1, { batchInvariant: true }));
const bits = [
  await differ(() => leanAttention(q1, k1, v1)),
  await differ(() => leanAttention(q1, k1, v1, { batchInvariant: true })),
];
for (const t of [q1, k1, v1]) t.dispose();
const [q2, k2, v2] = inputs(256, 1024 / s);
const lean1k = await time(() => leanAttention(q2, k2, v2, { grid: 128 }));
const flash1k = await time(() => flashAttention(q2, k2, v2));
bits.push(
  await differ(() => leanAttention(q2, k2, v2, { grid: 128 })),
  await differ(() => flashAttention(q2, k2, v2)),
);
for (const t of [q2, k2, v2]) t.dispose();
const per = (t: number) => (((t - lean16k) / 16) * 1000).toFixed(2);
const [n1, n2] = [16384 / s, 1024 / s];
console.log(`lean (16,32,8) ${n1}            ${lean16k.toFixed(4)} ms${bits[0]}`);
console.log(
  `invariant (16,32,8) ${n1}       ${inv16k.toFixed(4)} ms  (${per(inv16k)} µs a piece)${bits[1]}`,
);
console.log(
  `lean (256,32,8) ${n2}, grid 128  ${lean1k.toFixed(4)} ms  (${per(lean1k)} µs a segment)${
    bits[2]
  }`,
);
console.log(`flash (256,32,8) ${n2}           ${flash1k.toFixed(4)} ms${bits[3]}`);
gpu.destroy();
