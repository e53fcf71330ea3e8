/**
 * Attention variants (window, soft-cap, sinks, ALiBi, bias; VARIANTS.md) on every algorithm
 * against the float64 reference, on every backend: random shapes, GQA, ragged lengths,
 * causal, tile sizes, grids, split counts and dtypes (on WebGPU flash and lean run the WGSL
 * variant kernels; naiveAttention composes ops). Bad variant input:
 * tests/bad_input_variants_test.ts.
 */
import { ok as assert, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import type { Backend } from "../backends/backend.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { DType } from "../tensor/dtype.ts";
import { flashAttention, flashAttentionPlan } from "../attention/flash.ts";
import type { AttentionPlan } from "../schedule/attention_plan.ts";
import { leanAttention, leanAttentionPlan, leanAttentionSchedule } from "../attention/lean.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { cpuAttention } from "../backends/cpu/attention.ts";
import { closeAttentionWorkers, cpuAttentionParallel } from "../backends/cpu/_attention_worker.ts";
import { naiveAttention } from "../attention/naive.ts";
import type { VariantOptions } from "../attention/_variant.ts";
import { describeBackends, numRuns } from "./_backends.ts";
import { attentionTolerances, maxAbsDiff, referenceAttention } from "../testing/reference.ts";

interface VCase {
  B: number;
  Hkv: number;
  group: number;
  Sq: number;
  N: number;
  D: number;
  kvLens: number[];
  causal: boolean;
  dtype: DType;
  left?: number;
  right?: number;
  softcap?: number;
  sinks?: number[];
  slopes?: number[];
  /** Which dims of the bias are full (else 1), its rank and dtype; absent: no bias. */
  bias?: { full: boolean[]; rank: number; dtype: DType };
  sinksAsTensor: boolean;
  seed: number;
}

const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });

const vcaseArb = fc.record({
  B: fc.integer({ min: 1, max: 3 }),
  Hkv: fc.integer({ min: 1, max: 3 }),
  group: fc.integer({ min: 1, max: 3 }),
  Sq: fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 5 }) },
    { weight: 1, arbitrary: fc.integer({ min: 20, max: 70 }) },
  ),
  N: fc.integer({ min: 1, max: 150 }),
  D: fc.integer({ min: 1, max: 24 }),
  lenFracs: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 3, maxLength: 3 }),
  causal: fc.boolean(),
  dtype: fc.constantFrom<DType>("float32", "float32", "float16"),
  left: opt(fc.integer({ min: 0, max: 40 })),
  right: opt(fc.integer({ min: 0, max: 40 })),
  softcap: opt(fc.double({ min: 0.2, max: 60, noNaN: true })),
  sinks: opt(fc.array(fc.double({ min: -4, max: 4, noNaN: true }), { minLength: 9, maxLength: 9 })),
  slopes: opt(
    fc.array(fc.double({ min: 0, max: 0.5, noNaN: true }), { minLength: 9, maxLength: 9 }),
  ),
  bias: opt(fc.record({
    full: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    rank: fc.integer({ min: 1, max: 4 }),
    dtype: fc.constantFrom<DType>("float32", "float16"),
  })),
  sinksAsTensor: fc.boolean(),
  tileSize: fc.integer({ min: 1, max: 48 }),
  blockN: fc.integer({ min: 1, max: 48 }),
  numSplits: fc.integer({ min: 1, max: 9 }),
  grid: fc.integer({ min: 1, max: 24 }),
  seed: fc.integer({ min: 1, max: 1_000_000 }),
});

type Drawn = typeof vcaseArb extends fc.Arbitrary<infer T> ? T : never;

function toCase(d: Drawn): VCase {
  const Hq = d.Hkv * d.group;
  return {
    ...d,
    kvLens: d.lenFracs.slice(0, d.B).map((f) => Math.round(f * d.N)),
    sinks: d.sinks?.slice(0, Hq),
    slopes: d.slopes?.slice(0, Hq),
  };
}

interface Made {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  opts: VariantOptions & { causal: boolean; kvLens: number[] };
  ref: { out: Float64Array; lse: Float64Array };
  temps: Tensor[];
}

/** Inputs, the options, and the reference computed from the stored (rounded) values. */
export async function make(backend: Backend, c: VCase): Promise<Made> {
  const Hq = c.Hkv * c.group;
  const { dtype } = c;
  const q = randn([c.B, Hq, c.Sq, c.D], { seed: c.seed, dtype, backend });
  const k = randn([c.B, c.Hkv, c.N, c.D], { seed: c.seed + 1, dtype, backend });
  const v = randn([c.B, c.Hkv, c.N, c.D], { seed: c.seed + 2, dtype, backend });
  const temps: Tensor[] = [q, k, v];
  const opts: Made["opts"] = { causal: c.causal, kvLens: c.kvLens };
  if (c.left !== undefined || c.right !== undefined) {
    opts.window = {
      ...(c.left !== undefined ? { left: c.left } : {}),
      ...(c.right !== undefined ? { right: c.right } : {}),
    };
  }
  if (c.softcap !== undefined) opts.softcap = c.softcap;
  if (c.slopes) opts.alibiSlopes = c.slopes;
  if (c.sinks) {
    if (c.sinksAsTensor) {
      const t = tensor(c.sinks, { backend });
      temps.push(t);
      opts.sinks = t;
    } else opts.sinks = c.sinks;
  }
  let bias: { values: Float32Array; shape: number[] } | undefined;
  if (c.bias) {
    const full = [c.B, Hq, c.Sq, c.N];
    const shape4 = full.map((n, i) => (c.bias!.full[i] ? n : 1));
    // Dropped leading dims must be size 1 to broadcast.
    let rank = c.bias.rank;
    while (rank < 4 && shape4.slice(0, 4 - rank).some((n) => n !== 1)) rank++;
    const t = randn(shape4.slice(4 - rank), { seed: c.seed + 3, dtype: c.bias.dtype, backend });
    temps.push(t);
    opts.bias = t;
    bias = { values: await t.data(), shape: shape4 };
  }
  const ref = referenceAttention({
    q: await q.data(),
    k: await k.data(),
    v: await v.data(),
    B: c.B,
    Hq,
    Hkv: c.Hkv,
    Sq: c.Sq,
    N: c.N,
    D: c.D,
    causal: c.causal,
    kvLens: c.kvLens,
    window: opts.window,
    softcap: c.softcap,
    sinks: c.sinks,
    alibiSlopes: c.slopes,
    bias,
  });
  return { q, k, v, opts, ref, temps };
}

async function check(m: Made, r: { out: Tensor; lse: Tensor }, N: number, what: string) {
  const out = await r.out.data();
  const lse = await r.lse.data();
  r.out.dispose();
  r.lse.dispose();
  const tol = attentionTolerances(m.ref, N, m.q.dtype);
  const eo = maxAbsDiff(out, m.ref.out);
  const el = maxAbsDiff(lse, m.ref.lse);
  assert(eo <= tol.out, `${what}: out error ${eo} > ${tol.out}`);
  assert(el <= tol.lse, `${what}: lse error ${el} > ${tol.lse}`);
}

describeBackends("variants × algorithms agree with the float64 reference", async (backend) => {
  const seed = Date.now() % 1_000_000;
  console.log(`  fast-check seed ${seed}`);
  await fc.assert(
    fc.asyncProperty(vcaseArb, async (d) => {
      const c = toCase(d);
      const m = await make(backend, c);
      const what = JSON.stringify({ ...c, tileSize: d.tileSize, grid: d.grid });
      const o = { ...m.opts, returnLse: true as const };
      try {
        await check(m, naiveAttention(m.q, m.k, m.v, o), c.N, `naive ${what}`);
        const fused: [string, () => { out: Tensor; lse: Tensor }][] = [
          ["flash", () => flashAttention(m.q, m.k, m.v, { ...o, blockN: d.blockN })],
          [
            `flash-decoding(${d.numSplits})`,
            () => flashAttention(m.q, m.k, m.v, { ...o, blockN: d.blockN, numSplits: d.numSplits }),
          ],
          [
            `lean(grid ${d.grid})`,
            () => leanAttention(m.q, m.k, m.v, { ...o, tileSize: d.tileSize, grid: d.grid }),
          ],
        ];
        for (const [name, run] of fused) await check(m, run(), c.N, `${name} ${what}`);
      } finally {
        for (const t of m.temps) t.dispose();
      }
    }),
    { numRuns: numRuns(backend, 60), seed },
  );
});

describeBackends("keys outside every row's window are never read", async (backend) => {
  // K/V hold NaN before the window of every row: the result is finite and equal to the one
  // with finite values there (the schedule covers only visible keys; naive zeroes them).
  const B = 1, Hkv = 2, Hq = 4, Sq = 3, N = 90, D = 8, left = 10;
  const kvLens = [80];
  const firstVisible = kvLens[0] - Sq - left; // the first row's first key
  const q = randn([B, Hq, Sq, D], { seed: 5, backend });
  const k = randn([B, Hkv, N, D], { seed: 6, backend });
  const v = randn([B, Hkv, N, D], { seed: 7, backend });
  const poison = async (t: Tensor) => {
    const x = await t.data();
    for (let h = 0; h < Hkv; h++) {
      for (let j = 0; j < N; j++) {
        if (j >= firstVisible && j < kvLens[0]) continue;
        x.fill(NaN, (h * N + j) * D, (h * N + j + 1) * D);
      }
    }
    return tensor(x, { shape: t.shape, backend });
  };
  const kn = await poison(k);
  const vn = await poison(v);
  const opts = { causal: true, kvLens, window: { left }, returnLse: true as const };
  const runs: [string, (k: Tensor, v: Tensor) => { out: Tensor; lse: Tensor }][] = [
    ["naive", (k, v) => naiveAttention(q, k, v, opts)],
  ];
  if (backend.name === "cpu") {
    runs.push(
      ["flash", (k, v) => flashAttention(q, k, v, { ...opts, blockN: 4 })],
      ["flash-decoding", (k, v) => flashAttention(q, k, v, { ...opts, blockN: 4, numSplits: 3 })],
      ["lean", (k, v) => leanAttention(q, k, v, { ...opts, tileSize: 3, grid: 5 })],
    );
  }
  for (const [name, run] of runs) {
    const a = run(k, v);
    const b = run(kn, vn);
    const [ao, bo] = [await a.out.data(), await b.out.data()];
    assert(bo.every(Number.isFinite), `${name}: NaN in invisible keys leaked`);
    strictEqual(maxAbsDiff(ao, bo), 0, `${name}: result changed`);
    strictEqual(maxAbsDiff(await a.lse.data(), await b.lse.data()), 0, `${name}: lse changed`);
    for (const t of [a.out, a.lse, b.out, b.lse]) t.dispose();
  }
  for (const t of [q, k, v, kn, vn]) t.dispose();
});

Deno.test("a windowed decode over 512k keys schedules about the window's keys a head", () => {
  const N = 512 * 1024, left = 4096;
  const q = randn([1, 2, 1, 1], { seed: 1 });
  const k = randn([1, 1, N, 1], { seed: 2 });
  const s = leanAttentionSchedule(q, k, k, { window: { left }, tileSize: 64, grid: 8 });
  strictEqual(s.units.length, 1);
  strictEqual(s.units[0].keyStart, N - 1 - left);
  strictEqual(s.units[0].keys, left + 1);
  strictEqual(s.totalTiles, Math.ceil((left + 1) / 64));
  k.dispose();
  q.dispose();
});

Deno.test("the CPU worker pool runs a variant plan bit for bit like the in-thread executor", async () => {
  const backend = cpu();
  const q = randn([2, 4, 3, 16], { seed: 31, backend });
  const k = randn([2, 2, 200, 16], { seed: 32, backend });
  const v = randn([2, 2, 200, 16], { seed: 33, backend });
  const sinks = tensor([0.5, -1, 2, 0], { backend });
  const slopes = tensor([0.1, 0.2, 0.05, 0.3], { backend });
  const bias = randn([1, 4, 1, 200], { seed: 34, backend });
  const opts = {
    causal: true,
    kvLens: [200, 90],
    window: { left: 50, right: 0 },
    softcap: 20,
    sinks,
    alibiSlopes: slopes,
    bias,
  };
  const info = (t: Tensor) => ({ id: t.id, shape: t.shape, dtype: t.dtype });
  const inputs = {
    sinks: info(sinks),
    alibiSlopes: info(slopes),
    bias: { ...info(bias), shape: [1, 4, 1, 200] },
  };
  try {
    const plans: [string, AttentionPlan, () => Tensor][] = [
      [
        "lean",
        leanAttentionPlan(q, k, v, { ...opts, grid: 9, tileSize: 16 }),
        () => leanAttention(q, k, v, { ...opts, grid: 9, tileSize: 16 }),
      ],
      [
        "flash-decoding",
        flashAttentionPlan(q, k, v, { ...opts, numSplits: 3, blockN: 8 }),
        () => flashAttention(q, k, v, { ...opts, numSplits: 3, blockN: 8 }),
      ],
    ];
    for (const [name, plan, op] of plans) {
      const run = plan.runs[0];
      const one = cpuAttention(info(q), info(k), info(v), run, inputs);
      const par = await cpuAttentionParallel(info(q), info(k), info(v), run, {
        threads: 3,
        inputs,
      });
      strictEqual(maxAbsDiff(one.out, par.out), 0, `${name}: out`);
      strictEqual(maxAbsDiff(one.lse, par.lse), 0, `${name}: lse`);
      const viaOp = op();
      strictEqual(maxAbsDiff(one.out, await viaOp.data()), 0, `${name}: the op's executor`);
      viaOp.dispose();
    }
  } finally {
    closeAttentionWorkers();
    for (const t of [q, k, v, sinks, slopes, bias]) t.dispose();
  }
});
