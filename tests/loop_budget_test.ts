/**
 * Software adapters' loop limit (issue #19, item 1): Mesa's llvmpipe stops a shader
 * invocation's loops after 65,535 iterations in total, silently, so a worker walking many
 * segments or keys left outputs unwritten. The WebGPU planner cuts such runs on software
 * adapters (`schedule/loop_budget.ts`); these specs run the issue's shapes (CI runs on
 * lavapipe) against the float64 reference, and check the cut itself as a property.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  flashAttention,
  invariantSchedule,
  leanAttention,
  leanSchedule,
  type Tensor,
  tensor,
} from "../mod.ts";
import type { Backend } from "../backends/backend.ts";
import { type LoopCost, runCost, withinLoopBudget } from "../schedule/loop_budget.ts";
import type { LeanSchedule } from "../schedule/lean_schedule.ts";
import { attentionTolerances, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { describeBackends } from "./_backends.ts";

interface Shape {
  B: number;
  Hq: number;
  Hkv: number;
  N: number;
  D: number;
  dtype: "float32" | "float16";
  kvLens?: number[];
}

interface Data {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  ref: { out: Float64Array; lse: Float64Array; mag: number };
}

/** Uniform values in [−2, 2) from a 32-bit LCG (randn of float16 is slow on the CPU). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x * 2 ** -30 - 2;
  }
  return out;
}

/** Inputs (rounded to the dtype) and their float64 reference, made once per shape. */
const made = new Map<Shape, Data>();
function data(s: Shape): Data {
  const { B, Hq, Hkv, N, D, dtype } = s;
  let d = made.get(s);
  if (!d) {
    const round = (x: Float32Array) =>
      dtype === "float16" ? new Float32Array(new Float16Array(x)) : x;
    const [q, k, v] = [B * Hq * D, B * Hkv * N * D, B * Hkv * N * D].map((n, i) =>
      round(values(n, i + 1))
    );
    const ref = referenceAttention({ q, k, v, B, Hq, Hkv, Sq: 1, N, D, kvLens: s.kvLens });
    made.set(s, d = { q, k, v, ref });
  }
  return d;
}

async function check(
  backend: Backend,
  s: Shape,
  run: (q: Tensor, k: Tensor, v: Tensor) => { out: Tensor; lse: Tensor },
  what: string,
) {
  const { B, Hq, Hkv, N, D, dtype } = s;
  const d = data(s);
  const q = tensor(d.q, { shape: [B, Hq, 1, D], dtype, backend });
  const k = tensor(d.k, { shape: [B, Hkv, N, D], dtype, backend });
  const v = tensor(d.v, { shape: [B, Hkv, N, D], dtype, backend });
  const r = run(q, k, v);
  const [out, lse] = [await r.out.data(), await r.lse.data()];
  const ref = d.ref;
  // float32 sums over N keys, plus half an ulp of a float16 output.
  const { out: tolOut, lse: tolLse } = attentionTolerances(ref, N, dtype);
  const eo = maxAbsDiff(out, ref.out);
  const el = maxAbsDiff(lse, ref.lse);
  for (const t of [q, k, v, r.out, r.lse]) t.dispose();
  assert(eo <= tolOut, `${what} on ${backend.name}: out error ${eo} > ${tolOut}`);
  assert(el <= tolLse, `${what} on ${backend.name}: lse error ${el} > ${tolLse}`);
}

const oneKey: Shape = { B: 8192, Hq: 1, Hkv: 1, N: 1, D: 16, dtype: "float32" };
const longKeys: Shape = { B: 1, Hq: 8, Hkv: 1, N: 65536, D: 16, dtype: "float32" };

describeBackends(
  "lean, grid 1, 8,192 sequences of one key: every output written",
  (backend) =>
    check(
      backend,
      oneKey,
      (q, k, v) => leanAttention(q, k, v, { grid: 1, returnLse: true }),
      "lean grid 1",
    ),
);

let lcg = 7;
const kvLens = Array.from(
  { length: 1024 },
  () => (lcg = (lcg * 1103515245 + 12345) % 2 ** 31) % 128 + 1,
);
const ragged: Shape = { B: 1024, Hq: 32, Hkv: 8, N: 128, D: 64, dtype: "float16", kvLens };

describeBackends(
  "lean over ragged GQA decode (B 1024, 32/8 heads, N 128, D 64, f16)",
  async (b) => {
    // The default options (the call), and 4 workers: over 2,000 segments a worker.
    for (const grid of [undefined, 4]) {
      await check(
        b,
        ragged,
        (q, k, v) => leanAttention(q, k, v, { kvLens, grid, returnLse: true }),
        `lean grid ${grid ?? "default"}`,
      );
    }
  },
);

describeBackends(
  "flash (one worker a unit) over 65,536 keys, 8 query heads a kv head",
  (b) =>
    check(
      b,
      longKeys,
      (q, k, v) => flashAttention(q, k, v, { returnLse: true }),
      "flash",
    ),
);

/** Every unit's tiles covered once, in order, by the segments of `s`. */
function coverage(s: LeanSchedule): string[] {
  const seen: string[][] = s.units.map(() => []);
  for (const run of s.workers) {
    for (const g of run) seen[g.unit].push(`${g.tileStart}-${g.tileEnd}`);
  }
  return seen.map((x) => x.join(","));
}

Deno.test("withinLoopBudget: runs within the budget, same tiles, cut units merged in order", () => {
  const seed = Date.now() % 1e9;
  console.log(`fast-check seed ${seed}`);
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 1, max: 30 }),
      fc.integer({ min: 0, max: 100 }),
      (kvLens, grid, tileSize, perSegment, extra) => {
        const s = leanSchedule({ batch: kvLens.length, kvHeads: 1, kvLens, tileSize, grid });
        const cost: LoopCost = { perSegment, perKey: 1, budget: perSegment + tileSize + extra };
        const c = withinLoopBudget(s, cost);
        for (const run of c.workers) assert(runCost(c, run, cost) <= cost.budget);
        // The same tiles of each unit, now possibly in more pieces.
        const joined = (x: string) =>
          x.split(",").filter(Boolean).map((r) => r.split("-").map(Number));
        coverage(c).forEach((pieces, u) => {
          const p = joined(pieces);
          for (let i = 1; i < p.length; i++) assertEquals(p[i][0], p[i - 1][1]);
          if (s.units[u].tiles > 0) {
            assertEquals([p[0][0], p[p.length - 1][1]], [0, s.units[u].tiles]);
          }
        });
        // Cut units: partials listed in tile order, one per piece, slots distinct.
        for (const cut of c.cuts) {
          const pieces = c.workers.flat().filter((g) => g.unit === cut.unit)
            .sort((a, b) => a.tileStart - b.tileStart);
          assertEquals(pieces.map((g) => g.partial), cut.partials);
        }
        assertEquals(new Set(c.cuts.flatMap((x) => x.partials)).size, c.numPartials);
        if (s.workers.every((run) => runCost(s, run, cost) <= cost.budget)) assert(c === s);
      },
    ),
    { seed, numRuns: 300 },
  );
});

Deno.test("withinLoopBudget: an invariant schedule's pieces are cut only at offsets of their own", () => {
  const seed = Date.now() % 1e9;
  console.log(`fast-check seed ${seed}`);
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 20 }),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 32 }),
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 0, max: 200 }),
      (kvLens, grid, tileSize, chunkTiles, extra) => {
        const p = { kvHeads: 1, tileSize, chunkTiles };
        const cost: LoopCost = { perSegment: 3, perKey: 1, budget: 3 + tileSize + extra };
        const cut = (lens: number[], g: number) =>
          coverage(
            withinLoopBudget(
              invariantSchedule({ ...p, batch: lens.length, kvLens: lens, grid: g }),
              cost,
            ),
          );
        const all = cut(kvLens, grid);
        // Each sequence alone, with another grid: the same pieces as in the batch.
        kvLens.forEach((n, b) =>
          assertEquals(cut([n], 1 + (grid % 4))[0], all[b], `sequence ${b}`)
        );
      },
    ),
    { seed, numRuns: 200 },
  );
});
