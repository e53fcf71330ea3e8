/**
 * The demo: one decode problem, every attention algorithm on the default backend (WebGPU when
 * an adapter exists, else the CPU), each compared with a float64 reference. Also writes the
 * lean schedule of the problem as `schedule.svg`.
 *
 *     deno task demo [--cpu] [--n 1000] [--svg schedule.svg]
 */
import * as la from "../mod.ts";
import { flag } from "./_args.ts";
import { progress } from "../testing/progress.ts";

const args = {
  cpu: Deno.args.includes("--cpu"),
  n: flag("n", "1000"),
  svg: flag("svg", "schedule.svg"),
};
const backend = args.cpu ? la.cpu() : await la.defaultBackend();
const [B, Hq, Hkv, D] = [2, 8, 2, 64];
const N = Number(args.n);
const kvLens = [N, Math.max(1, Math.floor(N * 0.37))];
console.log(`backend: ${backend.name} — ${backend.description}`);
console.log(
  `problem: decode, q [${B}, ${Hq}, 1, ${D}], k/v [${B}, ${Hkv}, ${N}, ${D}], kvLens [${kvLens}]`,
);

const q = la.randn([B, Hq, 1, D], { seed: 1, backend });
const k = la.randn([B, Hkv, N, D], { seed: 2, backend });
const v = la.randn([B, Hkv, N, D], { seed: 3, backend });
const [qv, kv, vv] = await Promise.all([q.data(), k.data(), v.data()]);

// The float64 oracle, written plainly.
function reference(): Float64Array {
  const out = new Float64Array(B * Hq * D);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      bar.update(b * Hq + h, "float64 reference");
      const hk = Math.floor(h / (Hq / Hkv));
      const s: number[] = [];
      for (let j = 0; j < kvLens[b]; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) {
          dot += qv[(b * Hq + h) * D + d] * kv[((b * Hkv + hk) * N + j) * D + d];
        }
        s.push(dot * scale);
      }
      const m = Math.max(...s);
      const w = s.map((x) => Math.exp(x - m));
      const l = w.reduce((a, x) => a + x, 0);
      for (let j = 0; j < w.length; j++) {
        for (let d = 0; d < D; d++) {
          out[(b * Hq + h) * D + d] += (w[j] / l) * vv[((b * Hkv + hk) * N + j) * D + d];
        }
      }
    }
  }
  return out;
}
// Progress (stderr) for large --n: the float64 reference, then each algorithm.
const bar = progress("demo", B * Hq + 4);
const ref = reference();
const refMax = ref.reduce((a, x) => Math.max(a, Math.abs(x)), 0);

const algos: [string, () => la.Tensor][] = [
  ["naive", () => la.naiveAttention(q, k, v, { kvLens })],
  ["flash", () => la.flashAttention(q, k, v, { kvLens })],
  ["flash-decoding", () => la.flashAttention(q, k, v, { kvLens, numSplits: "auto" })],
  ["lean", () => la.leanAttention(q, k, v, { kvLens })],
];
const rows: string[][] = [];
for (const [i, [name, run]] of algos.entries()) {
  bar.update(B * Hq + i, name);
  run().dispose(); // warm-up: pipelines compile here
  const reps = 5;
  const t0 = performance.now();
  let out = run();
  for (let i = 1; i < reps; i++) {
    out.dispose();
    out = run();
  }
  const got = await out.data(); // the only wait
  const ms = (performance.now() - t0) / reps;
  out.dispose();
  let err = 0;
  for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - ref[i]));
  rows.push([name, err.toExponential(2), (err / refMax).toExponential(2), ms.toFixed(2)]);
}
bar.finish();
const head = ["algorithm", "max |err|", "rel. to max|ref|", "ms / call"];
const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i])).join("  ");
console.log("\n" + line(head));
console.log(w.map((n) => "-".repeat(n)).join("  "));
for (const r of rows) console.log(line(r));

// The schedule the lean calls above ran (their plan, from the plan cache).
const { schedule } = la.leanAttentionPlan(q, k, v, { kvLens });
const grid = schedule.workers.length;
await Deno.writeTextFile(args.svg, la.renderSchedule(schedule));
console.log(
  `\nlean schedule: ${schedule.totalTiles} tiles over ${grid} workers, ${schedule.cuts.length} ` +
    `cut heads → ${args.svg}`,
);
for (const t of [q, k, v]) t.dispose();
