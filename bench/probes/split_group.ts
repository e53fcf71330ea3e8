// Would GQA decode stream faster if a query group's rows were split over two workgroups that read
// the same keys at the same time (the second read served by L2)? Each workgroup would carry half
// the math a key and half the registers for q and the running output, so more of them could
// share a multiprocessor. Emulated without a kernel change through paged K/V: (B, 32, 8) becomes
// (2B, 16, 8), sequences 2b and 2b+1 seeing the same pages (sequence b's) through the block table.
// Timed like the benchmark (one chain, blocks between marks; `bench/_timing.ts`), float16, D 128,
// pages of 256 keys in order, µs a call:
//   dense     lean on contiguous (B, 32, 8) K/V (the library as it is)
//   paged     lean on the same K/V as pages (B, 32, 8): the baseline of the emulation
//   split     lean on (2B, 16, 8) over shared pages, default grid
//   split gN  the same at grid N
//   split, own pages  (2B, 16, 8) with each sequence its own pages (twice the bytes from DRAM):
//             how much of `split` the shared reads save
// The chain hands each call the previous output, reshaped where the row layout differs (the same
// elements), so the values differ from a real split; only the time counts here.
//     deno run -A --lock=deno.lock bench/probes/split_group.ts [--small] [--shapes "B,N;…"]
//       [--grids 128,256]
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { leanAttention, pagedKV, randn } from "../../mod.ts";
import { allocStorage, tileInto } from "../_inputs.ts";
import { type Call, gpuTimesInterleaved } from "../_timing.ts";
import { leanAttentionSchedule } from "../../attention/lean.ts";

const gpu = await webgpu();
console.log(`adapter: ${gpu.description}`);
const D = 128, Hkv = 8, ps = 256;
const small = Deno.args.includes("--small");
const si = Deno.args.indexOf("--shapes");
const shapes = si >= 0
  ? Deno.args[si + 1].split(";").map((x) => x.split(",").map(Number))
  : small
  ? [[1, 2048], [4, 1024]]
  : [[1, 65536], [4, 65536], [16, 65536], [16, 16384], [4, 16384]];
const gi = Deno.args.indexOf("--grids");
const grids = gi >= 0 ? Deno.args[gi + 1].split(",").map(Number) : [128, 256, 264];

// K/V and pages are copies of seeded blocks, tiled on the GPU (drawing gigabytes of normals on
// the host took minutes: the first H100 run timed out after two shapes).
const blockK = randn([1 << 21], { seed: 2, dtype: "float16", backend: gpu });
const blockV = randn([1 << 21], { seed: 3, dtype: "float16", backend: gpu });
const filled = (shape: number[], block: typeof blockK) => {
  const t = allocStorage(gpu, shape, "float16");
  tileInto(gpu, block, t);
  return t;
};
for (const [B, N] of shapes) {
  const q = randn([B, 32, 1, D], { seed: 1, dtype: "float16", backend: gpu });
  const k = filled([B, Hkv, N, D], blockK);
  const v = filled([B, Hkv, N, D], blockV);
  // Pages [P, Hkv, ps, D] in order: page b·(N/ps) + t holds keys t·ps… of sequence b (other
  // values than k and v: only the time counts).
  const nb = N / ps;
  const P = B * nb;
  // Twice the pages: the second half serves `split, own pages` (odd sequences).
  const kp = filled([2 * P, Hkv, ps, D], blockV);
  const vp = filled([2 * P, Hkv, ps, D], blockK);
  const rows = (b: number) => [...Array(nb).keys()].map((t) => b * nb + t);
  const base = pagedKV({
    kPages: kp,
    vPages: vp,
    blockTable: [...Array(B).keys()].map(rows),
    kvLens: Array(B).fill(N),
  });
  const shared = pagedKV({
    kPages: kp,
    vPages: vp,
    blockTable: [...Array(2 * B).keys()].map((s) => rows(s >> 1)),
    kvLens: Array(2 * B).fill(N),
  });
  const own = pagedKV({
    kPages: kp,
    vPages: vp,
    blockTable: [...Array(2 * B).keys()].map((s) => rows((s >> 1) + (s & 1) * B)),
    kvLens: Array(2 * B).fill(N),
  });
  const split = (grid?: number, kv = shared): Call => (qIn = q) => {
    const o = leanAttention(qIn.reshape([2 * B, 16, 1, D]), kv, grid ? { grid } : {});
    const r = o.reshape([B, 32, 1, D]);
    o.dispose();
    return r;
  };
  const names = [
    "dense",
    "paged",
    "split",
    ...grids.map((g) => `split g${g}`),
    "split, own pages",
  ];
  const calls: Call[] = [
    (qIn = q) => leanAttention(qIn, k, v),
    (qIn = q) => leanAttention(qIn, base),
    split(),
    ...grids.map((g) => split(g)),
    split(undefined, own),
  ];
  const times = await gpuTimesInterleaved(gpu, calls, 20, 3);
  const bytes = 2 * B * Hkv * N * D * 2;
  const gDense = leanAttentionSchedule(q, k, v).plan.grid;
  const cells = names.map((n, i) => {
    const t = times[i];
    return t
      ? `${n} ${(t.ms * 1e3).toFixed(1)} (${(bytes / t.ms / 1e9).toFixed(2)} TB/s)`
      : `${n} —`;
  });
  console.log(
    `(${B},32,8) N ${N}, ${(bytes / 1e6).toFixed(0)} MB, dense grid ${gDense}: ${
      cells.join(" | ")
    }`,
  );
  for (const t of [q, k, v, kp, vp]) t.dispose();
  base.dispose();
  shared.dispose();
  own.dispose();
}
blockK.dispose();
blockV.dispose();
gpu.destroy();
