// The cost of batchInvariant (f16, D 128, decode): GPU time per call (median, timestamp
// queries) of lean with `batchInvariant: true` against plain lean, at the shapes of the
// benchmark's headline and its paged/invariant table, with the piece length the library's rule
// gives (`invariantChunkKeys`) printed beside it. Run it from two checkouts to compare rules.
//     deno run -A --lock=deno.lock bench/probes/invariant_chunk.ts [--small] [--n 4096,16384] [--ab]
//       [--grids 2x,P]
// `--grids`: also the invariant call with other grids (the grid does not change its bits): `<k>x`
// k times lean's default grid, `P` one worker a piece, a number that many workers. `--tune
// '{"wg":128}'`: the invariant calls (not lean's) with these kernel knobs (`AttentionTuning`).
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { leanAttention, leanAttentionSchedule, randn, type Tensor } from "../../mod.ts";
import { invariantChunkKeys } from "../../schedule/limits.ts";
import { allocStorage, tileInto } from "../_inputs.ts";
import { medianCallMs } from "./_gpu_time.ts";

const gpu = await webgpu();
console.log(gpu.description);
const small = Deno.args.includes("--small");
const D = 128;

const time = (f: () => Tensor, reps: number) => medianCallMs(gpu, f, reps);

const blockK = randn([1 << 21], { seed: 1, dtype: "float16", backend: gpu });
const blockV = randn([1 << 21], { seed: 3, dtype: "float16", backend: gpu });
const shapes = small ? [[1, 32, 8, 8192]] : [
  [1, 32, 8, 4096],
  [1, 32, 8, 16384],
  [1, 32, 8, 65536],
  [1, 32, 8, 262144],
  [1, 32, 8, 524288],
  [4, 32, 8, 4096],
  [4, 32, 8, 16384],
  [4, 32, 8, 65536],
  [16, 32, 8, 4096],
  [16, 32, 8, 16384],
  [1, 32, 32, 4096],
  [1, 32, 32, 16384],
  [1, 32, 32, 65536],
  [4, 32, 32, 4096],
  [4, 32, 32, 65536],
  [16, 32, 32, 4096],
];
// `--n a,b`: only the shapes of these lengths.
const ni = Deno.args.indexOf("--n");
const only = ni >= 0 ? Deno.args[ni + 1].split(",").map(Number) : null;
// `--hkv 8`: only the shapes with that many kv heads.
const hi = Deno.args.indexOf("--hkv");
const hkv = hi >= 0 ? Number(Deno.args[hi + 1]) : null;
const picked = shapes.filter((s) => (!only || only.includes(s[3])) && (!hkv || s[2] === hkv));
const ti = Deno.args.indexOf("--tune");
const tune = ti >= 0 ? JSON.parse(Deno.args[ti + 1]) : {};
const gi = Deno.args.indexOf("--grids");
const grids = gi >= 0 ? Deno.args[gi + 1].split(",") : [];
/** `t` against `base`, as a signed percentage. */
const pct = (t: number, base: number) =>
  `${t >= base ? "+" : ""}${(100 * (t / base - 1)).toFixed(1)} %`;
for (const [B, Hq, Hkv, N] of picked) {
  const q = randn([B, Hq, 1, D], { seed: 2, dtype: "float16", backend: gpu });
  const k = allocStorage(gpu, [B, Hkv, N, D], "float16");
  const v = allocStorage(gpu, [B, Hkv, N, D], "float16");
  tileInto(gpu, blockK, k);
  tileInto(gpu, blockV, v);
  const base = await time(() => leanAttention(q, k, v), 30);
  gpu.attentionTuning = tune;
  const inv = await time(() => leanAttention(q, k, v, { batchInvariant: true }), 30);
  let gridsMore = "";
  if (grids.length > 0) {
    const lean = leanAttentionSchedule(q, k, v).workers.length;
    const pieces = B * Hkv * Math.ceil(N / invariantChunkKeys(N));
    for (const g of grids) {
      const grid = g === "P" ? pieces : g.endsWith("x") ? lean * Number(g.slice(0, -1)) : Number(g);
      const t = await time(() => leanAttention(q, k, v, { batchInvariant: true, grid }), 30);
      gridsMore += ` | grid ${grid} (${g}) ${t.toFixed(4)} ms (${pct(t, base)})`;
    }
    gridsMore = ` | lean grid ${lean}, ${pieces} pieces` + gridsMore;
  }
  gpu.attentionTuning = {};
  // `--ab`: also with each piece's state published and counted at the piece's end (the
  // in-kernel merge not deferred) and merged by the reduce pass (no fence or count at all).
  let more = "";
  if (Deno.args.includes("--ab")) {
    for (
      const [name, tuning] of [["not deferred", { deferMerge: false }], ["reduce pass", {
        fusedMerge: false,
      }]] as const
    ) {
      gpu.attentionTuning = tuning;
      const t = await time(() => leanAttention(q, k, v, { batchInvariant: true }), 30);
      gpu.attentionTuning = {};
      more += ` | ${name} ${t.toFixed(4)} ms (${pct(t, base)})`;
    }
  }
  console.log(
    `(${B},${Hq},${Hkv}) N=${N}: lean ${base.toFixed(4)} ms | invariant (pieces of ${
      invariantChunkKeys(N)
    }) ${inv.toFixed(4)} ms (${pct(inv, base)})${more}${gridsMore}`,
  );
  for (const t of [q, k, v]) t.dispose();
}
gpu.destroy();
