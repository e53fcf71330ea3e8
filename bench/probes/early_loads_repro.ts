// The smallest form of session (8)'s NaN rows (bench/NOTES.md, "Session 2026-12-06 (8)"): the
// library's GQA subgroup kernel (prefetch on) with its first batch of K/V and/or its q loaded
// before the segment loop, into function-scope registers, instead of at the segment's start.
// The loads, the values and the arithmetic are the same, so the outputs must be bit for bit
// those of the unmodified kernel; on lavapipe they are, on an H100 (Deno 2.9.6) q alone and
// `kv,next` give NaN everywhere (NOTES.md, session 9). At 128 workers every case has one segment
// a worker, so only the hoisted loads differ. Prints, per case, grid and variant, how many
// outputs differ from the unmodified kernel and the first rows that do; exits 1 when any does.
// `--small`: 8× fewer keys; `--one`: the first case only.
//     deno run -A --lock=deno.lock bench/probes/early_loads_repro.ts [--small] [--one]
//       [--variants "a;b"]
// Variants (WGSL edits of the generated kernel, timing-neutral):
//   kv+q     first batch and q before the loop (the library's second form without its in-loop block)
//   kv       only the first batch
//   q        only q
//   kv+q,if  both, the block under `if (segA < segB)` (the first form)
//   kv+q,init  both, the registers declared with an explicit zero initializer
//   kv+q,bar   both, a workgroupBarrier() after the hoisted block
//   kv+q,arr   both, the registers as two function-scope arrays (hk for K/V, hq for q)
//   q,<form>   only q, in each form above
//   kv,next    only K/V, and the next segment's first batch loaded after the key loop, before
//              the merge, under `if (si + 1u < segB)` (session 8's early loads without q); also
//              at grids 20 and 7, where workers have two or more segments
//   q,fin      only q, with −∞ (the states' initial maximum) replaced by −3e38 in both this
//              kernel and its reference (is the compiler's handling of ∞ involved?)
//   q,np       only q, with the NaN/+∞ tests (poison_score, is_nan) false in both this kernel and
//              its reference (are the NaN rows the poison path's, or the arithmetic's?)
//   q,opq      only q, with the NaN/+∞ tests' constants read from the metadata at run time in
//              both this kernel and its reference (H100, session 10: still NaN in every output)
//   kv,next,opq  kv,next with the tests of q,opq (H100, session 10: the same NaN counts)
// `--variants "kv+q;q,opq;…"`: only the named variants.
// Each line: elements that differ, NaN among them, the largest |difference| elsewhere.
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { leanAttention, randn, type Tensor } from "../../mod.ts";
import { editSubgroupKernels, type KernelEdit } from "./_sg_edit.ts";
import { baseEdit, baseForm, type Form, hoist } from "./_hoist_loads.ts";

const gpu = await webgpu();
console.log(gpu.description);

const variants: [string, boolean, boolean, boolean, Form][] = [
  ["kv+q", true, true, false, ""],
  ["kv", true, false, false, ""],
  ["q", false, true, false, ""],
  ["kv+q,if", true, true, true, ""],
  ["kv+q,init", true, true, false, "init"],
  ["kv+q,bar", true, true, false, "bar"],
  ["kv+q,arr", true, true, false, "arr"],
  ["kv,arr", true, false, false, "arr"],
  ["q,if", false, true, true, ""],
  ["q,init", false, true, false, "init"],
  ["q,bar", false, true, false, "bar"],
  ["q,arr", false, true, false, "arr"],
  ["q,fin", false, true, false, "fin"],
  ["q,np", false, true, false, "np"],
  ["q,opq", false, true, false, "opq"],
  ["kv,next", true, false, false, "next"],
  ["kv,next,opq", true, false, false, "next+opq"],
];
// `--variants "a;b"`: only those (names as above; they hold commas).
const vi = Deno.args.indexOf("--variants");
const only = vi >= 0 ? Deno.args[vi + 1].split(";") : null;
for (const n of only ?? []) {
  if (!variants.some((v) => v[0] === n)) throw new Error(`early_loads_repro: no variant ${n}`);
}
let edit: KernelEdit | null = null;
editSubgroupKernels(gpu.ctx, () => edit);
gpu.attentionTuning = { pf: true };

const s = Deno.args.includes("--small") ? 8 : 1;
const cases = [
  { B: 4, Hq: 32, Hkv: 8, N: 2048 / s, D: 128, dtype: "float32" as const },
  { B: 4, Hq: 32, Hkv: 8, N: 16384 / s, D: 128, dtype: "float16" as const },
  { B: 2, Hq: 8, Hkv: 2, N: 4096 / s, D: 64, dtype: "float32" as const },
].slice(0, Deno.args.includes("--one") ? 1 : 3);
let bad = 0;
for (const [ci, c] of cases.entries()) {
  const q = randn([c.B, c.Hq, 1, c.D], { seed: 1 + ci, dtype: c.dtype, backend: gpu });
  const k = randn([c.B, c.Hkv, c.N, c.D], { seed: 11 + ci, dtype: c.dtype, backend: gpu });
  const v = randn([c.B, c.Hkv, c.N, c.D], { seed: 21 + ci, dtype: c.dtype, backend: gpu });
  const run = async (grid: number): Promise<Float32Array> => {
    const o: Tensor = leanAttention(q, k, v, { grid });
    const d = Float32Array.from(await o.data());
    o.dispose();
    return d;
  };
  console.log(`case ${ci}: (${c.B},${c.Hq},${c.Hkv}) N ${c.N} D ${c.D} ${c.dtype}`);
  for (const grid of [128, 20, 7]) {
    const refs = new Map<Form, Float32Array>();
    for (const f of ["", "fin", "np", "opq"] as const) {
      edit = f ? { tag: `repro-ref-${f}`, edit: baseEdit(f) } : null;
      refs.set(f, await run(grid));
    }
    // Below 128 workers a worker has several segments: only `next` keeps the bits there.
    for (const [name, kv, qq, guard, form] of variants) {
      if (only && !only.includes(name)) continue;
      if (grid !== 128 && !form.startsWith("next")) continue;
      edit = { tag: `repro-${name}`, edit: (code) => hoist(code, kv, qq, guard, form) };
      const out = await run(grid);
      edit = null;
      const ref = refs.get(baseForm(form))!;
      let n = 0, nan = 0, big = 0;
      const rowsBad = new Set<number>();
      for (let i = 0; i < out.length; i++) {
        if (!Object.is(out[i], ref[i])) {
          n++;
          if (Number.isNaN(out[i])) nan++;
          else big = Math.max(big, Math.abs(out[i] - ref[i]));
          rowsBad.add(Math.floor(i / c.D));
        }
      }
      if (n) bad++;
      const first = [...rowsBad].slice(0, 8).join(" ");
      const how = n ? ` (NaN ${nan}, max ${big.toExponential(2)}) rows ${first}` : "";
      console.log(
        `  grid ${String(grid).padStart(3)} ${name.padEnd(10)} differ ${n}/${out.length}${how}`,
      );
    }
  }
  for (const t of [q, k, v]) t.dispose();
}
if (bad) Deno.exit(1);
