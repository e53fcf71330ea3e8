// The smallest form of session (8)'s NaN rows (bench/NOTES.md, "Session 2026-12-06 (8)"): the
// library's GQA subgroup kernel (prefetch on) with its first batch of K/V and/or its q loaded
// before the segment loop, into function-scope registers, instead of at the segment's start.
// The loads, the values and the arithmetic are the same, so the outputs must be bit for bit
// those of the unmodified kernel; on lavapipe they are, on an H100 (Deno 2.9.6) the library's
// version of this gave NaN rows. Every case has one segment a worker (lean at 128 workers), so
// only the hoisted loads differ. Prints, per case and variant, how many outputs differ from the
// unmodified kernel and the first rows that do; exits 1 when any does.
//     deno run -A --lock=deno.lock bench/probes/early_loads_repro.ts [--small]
// Variants (WGSL edits of the generated kernel, timing-neutral):
//   kv+q     first batch and q before the loop (the library's second form without its in-loop block)
//   kv       only the first batch
//   q        only q
//   kv+q,if  both, the block under `if (segA < segB)` (the first form)
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { META, META_SEG_OFFS } from "../../backends/webgpu/attention/_wgsl_meta.ts";
import { leanAttention, randn, type Tensor } from "../../mod.ts";
import { editSubgroupKernels, type KernelEdit } from "./_sg_edit.ts";

const gpu = await webgpu();
console.log(gpu.description);

/** The kernel with its first-batch loads (`kv`) and/or q loads hoisted before the segments. */
export function hoist(code: string, kv: boolean, q: boolean, guard: boolean): string {
  const lines = code.split("\n");
  const at = (re: RegExp, from = 0) => {
    const i = lines.findIndex((l, j) => j >= from && re.test(l));
    if (i < 0) throw new Error(`early_loads_repro: no line ${re} in the kernel`);
    return i;
  };
  const loop = at(/^ {2}for \(var si = segA; si < segB; si\+\+\) \{$/);
  const pass = at(/^ {4}for \(var rc = 0u;/, loop);
  const klast = at(/^ {4}let klast = /, pass);
  const fields = lines.slice(loop + 1, pass).filter((l) => !l.trim().startsWith("//"));
  const rows = lines.slice(pass + 1, klast + 1).filter((l) => !/let (fr|act) = /.test(l));
  const isKv = (l: string) => /^ {4}(let kr0_\d+ = |var n[kv]a\d+_\d+ = )/.test(l);
  const isQ = (l: string) => /^ {4}let q\d+_\d+ = scale \* /.test(l);
  const moved = lines.map((l, i) => i > klast && ((kv && isKv(l)) || (q && isQ(l))));
  const hoisted = lines.filter((_, i) => moved[i]);
  if (!hoisted.length) throw new Error("early_loads_repro: nothing to hoist (prefetch off?)");
  const kT = /var<storage, read> K: array<([^>]+>)>;/.exec(code)?.[1];
  if (!kT) throw new Error("early_loads_repro: K's element type not found");
  const decls = hoisted.flatMap((l) => {
    const m = /^ {4}(?:var|let) (n[kv]a\d+_\d+|q\d+_\d+) = /.exec(l);
    return m ? [`  var ${m[1]}: ${m[1].startsWith("q") ? "vec4<f32>" : kT};`] : [];
  });
  const assign = hoisted.map((l) =>
    l.replace(/^ {4}var (n[kv]a)/, "    $1").replace(/^ {4}let (q\d)/, "    $1")
  );
  const segAll = `mt[${META_SEG_OFFS}u + mt[${META.numWorkers}]]`;
  const prologue = [
    ...decls,
    guard ? "  if (segA < segB) {" : "  {",
    `    let si = min(segA, max(${segAll}, 1u) - 1u);`,
    ...fields,
    "    let rc = 0u;",
    ...rows,
    ...assign,
    "  }",
  ];
  const out = lines.filter((_, i) => !moved[i]);
  out.splice(loop, 0, ...prologue);
  return out.join("\n");
}

const variants: [string, boolean, boolean, boolean][] = [
  ["kv+q", true, true, false],
  ["kv", true, false, false],
  ["q", false, true, false],
  ["kv+q,if", true, true, true],
];
let edit: KernelEdit | null = null;
editSubgroupKernels(gpu.ctx, () => edit);
gpu.attentionTuning = { pf: true };

const s = Deno.args.includes("--small") ? 8 : 1;
const cases = [
  { B: 4, Hq: 32, Hkv: 8, N: 2048 / s, D: 128, dtype: "float32" as const },
  { B: 4, Hq: 32, Hkv: 8, N: 16384 / s, D: 128, dtype: "float16" as const },
  { B: 2, Hq: 8, Hkv: 2, N: 4096 / s, D: 64, dtype: "float32" as const },
];
let bad = 0;
for (const [ci, c] of cases.entries()) {
  const q = randn([c.B, c.Hq, 1, c.D], { seed: 1 + ci, dtype: c.dtype, backend: gpu });
  const k = randn([c.B, c.Hkv, c.N, c.D], { seed: 11 + ci, dtype: c.dtype, backend: gpu });
  const v = randn([c.B, c.Hkv, c.N, c.D], { seed: 21 + ci, dtype: c.dtype, backend: gpu });
  const run = async (): Promise<Float32Array> => {
    const o: Tensor = leanAttention(q, k, v, { grid: 128 });
    const d = Float32Array.from(await o.data());
    o.dispose();
    return d;
  };
  edit = null;
  const ref = await run();
  console.log(`case ${ci}: (${c.B},${c.Hq},${c.Hkv}) N ${c.N} D ${c.D} ${c.dtype}, grid 128`);
  for (const [name, kv, qq, guard] of variants) {
    edit = { tag: `repro-${name}`, edit: (code) => hoist(code, kv, qq, guard) };
    const out = await run();
    edit = null;
    let n = 0;
    const rowsBad = new Set<number>();
    for (let i = 0; i < out.length; i++) {
      if (!Object.is(out[i], ref[i])) {
        n++;
        rowsBad.add(Math.floor(i / c.D));
      }
    }
    if (n) bad++;
    const first = [...rowsBad].slice(0, 8).join(" ");
    console.log(`  ${name.padEnd(8)} differ ${n}/${out.length}${n ? ` rows ${first}` : ""}`);
  }
  for (const t of [q, k, v]) t.dispose();
}
if (bad) Deno.exit(1);
