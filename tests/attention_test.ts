/**
 * flash, flash-decoding and lean attention against the float64 reference, on every backend:
 * random shapes, GQA groups, ragged lengths (0 and 1 included), tile sizes, grids and split
 * counts; named edge cases; float16 inputs; determinism. Bad input:
 * tests/bad_input_attention_test.ts.
 */
import { plainRun } from "../schedule/attention_plan.ts";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import type { Backend } from "../backends/backend.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { DType } from "../tensor/dtype.ts";
import { flashAttention, flashSchedule } from "../attention/flash.ts";
import { leanAttention, leanAttentionSchedule } from "../attention/lean.ts";
import { describeBackends, numRuns } from "./_backends.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { cpuAttention } from "../backends/cpu/attention.ts";
import { closeAttentionWorkers, cpuAttentionParallel } from "../backends/cpu/_attention_worker.ts";

import {
  attentionTolerances,
  maxAbs,
  maxAbsDiff,
  referenceAttention,
} from "../testing/reference.ts";

interface Case {
  B: number;
  Hkv: number;
  group: number;
  Sq: number;
  N: number;
  D: number;
  kvLens?: number[];
  causal?: boolean;
  scale?: number;
  dtype?: DType;
  seed: number;
}

interface Inputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  ref: { out: Float64Array; lse: Float64Array };
  c: Case;
}

async function inputs(backend: Backend, c: Case, qScale = 1): Promise<Inputs> {
  const Hq = c.Hkv * c.group;
  const dtype = c.dtype ?? "float32";
  let q = randn([c.B, Hq, c.Sq, c.D], { seed: c.seed, dtype, backend });
  if (qScale !== 1) {
    q = tensor((await q.data()).map((x) => x * qScale), {
      shape: q.shape,
      dtype,
      backend,
    });
  }
  const k = randn([c.B, c.Hkv, c.N, c.D], { seed: c.seed + 1, dtype, backend });
  const v = randn([c.B, c.Hkv, c.N, c.D], { seed: c.seed + 2, dtype, backend });
  // The reference sees exactly the stored (rounded) inputs.
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
    scale: c.scale,
    causal: c.causal,
    kvLens: c.kvLens,
  });
  return { q, k, v, ref, c };
}

/**
 * Tolerances: float32 rounding of scores and sums grows slowly with the key count; a float16
 * output adds its own rounding (half an ulp of the largest value).
 */
function tolerances(x: Inputs): { out: number; lse: number } {
  return attentionTolerances(x.ref, x.c.N, x.q.dtype);
}

type Result = { out: Tensor; lse: Tensor };

async function check(x: Inputs, r: Result, what: string): Promise<Float32Array[]> {
  const out = await r.out.data();
  const lse = await r.lse.data();
  assertEquals(r.out.shape, [x.c.B, x.c.Hkv * x.c.group, x.c.Sq, x.c.D]);
  assertEquals(r.lse.dtype, "float32");
  assertEquals(r.out.dtype, x.q.dtype);
  const tol = tolerances(x);
  const eo = maxAbsDiff(out, x.ref.out);
  const el = maxAbsDiff(lse, x.ref.lse);
  assert(eo <= tol.out, `${what}: out error ${eo} > ${tol.out} (${JSON.stringify(x.c)})`);
  assert(el <= tol.lse, `${what}: lse error ${el} > ${tol.lse} (${JSON.stringify(x.c)})`);
  r.out.dispose();
  r.lse.dispose();
  return [out, lse];
}

function dispose(x: Inputs): void {
  x.q.dispose();
  x.k.dispose();
  x.v.dispose();
}

/** Total element-products of a case; keeps CPU runs short. */
const BUDGET = 2_000_000;

const caseArb = fc.record({
  B: fc.integer({ min: 1, max: 4 }),
  Hkv: fc.integer({ min: 1, max: 4 }),
  group: fc.integer({ min: 1, max: 4 }),
  Sq: fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }) },
    { weight: 1, arbitrary: fc.integer({ min: 60, max: 140 }) },
  ),
  N: fc.integer({ min: 1, max: 700 }),
  D: fc.integer({ min: 1, max: 80 }),
  lenKinds: fc.array(
    fc.tuple(
      fc.integer({ min: 0, max: 3 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
    ),
    {
      minLength: 4,
      maxLength: 4,
    },
  ),
  causal: fc.boolean(),
  customScale: fc.option(fc.double({ min: 0.01, max: 2, noNaN: true }), { nil: undefined }),
  tileSize: fc.integer({ min: 1, max: 128 }),
  blockN: fc.integer({ min: 1, max: 128 }),
  gridPick: fc.tuple(
    fc.boolean(),
    fc.integer({ min: 1, max: 8 }),
    fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  ),
  numSplits: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.constant("auto" as const)),
  seed: fc.integer({ min: 1, max: 1_000_000 }),
});

type Drawn = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

function toCase(d: Drawn): Case {
  const Hq = d.Hkv * d.group;
  // Shrink N (then D) so one case stays within the CPU budget.
  const N = Math.max(1, Math.min(d.N, Math.floor(BUDGET / (d.B * Hq * d.Sq * d.D))));
  const kvLens = d.lenKinds.slice(0, d.B).map(([kind, f]) =>
    kind === 0 ? 0 : kind === 1 ? 1 : kind === 2 ? Math.floor(f * (N + 1)) : N
  );
  return {
    B: d.B,
    Hkv: d.Hkv,
    group: d.group,
    Sq: d.Sq,
    N,
    D: d.D,
    kvLens,
    causal: d.causal,
    scale: d.customScale,
    seed: d.seed,
  };
}

describeBackends("flash, flash-decoding and lean agree with the reference", async (backend) => {
  await fc.assert(
    fc.asyncProperty(caseArb, async (d) => {
      const c = toCase(d);
      const x = await inputs(backend, c);
      const common = {
        kvLens: c.kvLens,
        causal: c.causal,
        scale: c.scale,
        returnLse: true as const,
      };
      const flash = await check(
        x,
        flashAttention(x.q, x.k, x.v, { ...common, blockN: d.blockN }),
        "flash",
      );
      const split = await check(
        x,
        flashAttention(x.q, x.k, x.v, { ...common, blockN: d.blockN, numSplits: d.numSplits }),
        `flash-decoding(${d.numSplits})`,
      );
      const tiles = leanAttentionSchedule(x.q, x.k, x.v, {
        ...common,
        tileSize: d.tileSize,
        grid: 1,
      }).totalTiles;
      // Small grids often; otherwise anywhere in 1..tiles + 5.
      const [small, g, f] = d.gridPick;
      const grid = small ? g : 1 + Math.floor(f * (tiles + 5));
      const lean = await check(
        x,
        leanAttention(x.q, x.k, x.v, { ...common, tileSize: d.tileSize, grid }),
        `lean(tile ${d.tileSize}, grid ${grid})`,
      );
      // Each other: within the sum of their distances to the reference.
      const tol = tolerances(x);
      for (const [name, r] of [["flash-decoding", split], ["lean", lean]] as const) {
        assert(maxAbsDiff(r[0], flash[0]) <= 2 * tol.out, `${name} vs flash: out`);
        assert(maxAbsDiff(r[1], flash[1]) <= 2 * tol.lse, `${name} vs flash: lse`);
      }
      dispose(x);
    }),
    { numRuns: numRuns(backend, 120) },
  );
});

describeBackends(
  "float16 inputs stay within rounding of the f16-input reference",
  async (backend) => {
    await fc.assert(
      fc.asyncProperty(caseArb, async (d) => {
        const c = { ...toCase(d), dtype: "float16" as const };
        const x = await inputs(backend, c);
        const common = {
          kvLens: c.kvLens,
          causal: c.causal,
          scale: c.scale,
          returnLse: true as const,
        };
        await check(x, flashAttention(x.q, x.k, x.v, { ...common, blockN: d.blockN }), "flash f16");
        await check(
          x,
          flashAttention(x.q, x.k, x.v, { ...common, numSplits: d.numSplits }),
          "flash-decoding f16",
        );
        await check(
          x,
          leanAttention(x.q, x.k, x.v, { ...common, tileSize: d.tileSize, grid: 3 }),
          "lean f16",
        );
        dispose(x);
      }),
      { numRuns: numRuns(backend, 10) },
    );
  },
);

describeBackends("same call twice gives bit-identical results", async (backend) => {
  const x = await inputs(backend, {
    B: 3,
    Hkv: 2,
    group: 3,
    Sq: 2,
    N: 333,
    D: 24,
    kvLens: [333, 17, 200],
    causal: true,
    seed: 7,
  });
  const runs: (() => Result)[] = [
    () => flashAttention(x.q, x.k, x.v, { returnLse: true, kvLens: x.c.kvLens, causal: true }),
    () =>
      flashAttention(x.q, x.k, x.v, {
        returnLse: true,
        kvLens: x.c.kvLens,
        causal: true,
        numSplits: 5,
        blockN: 16,
      }),
    () =>
      leanAttention(x.q, x.k, x.v, {
        returnLse: true,
        kvLens: x.c.kvLens,
        causal: true,
        grid: 11,
        tileSize: 10,
      }),
  ];
  for (const run of runs) {
    const a = run();
    const b = run();
    assertEquals(await a.out.data(), await b.out.data());
    assertEquals(await a.lse.data(), await b.lse.data());
  }
  dispose(x);
});

describeBackends("N = 1: the output is V[0] for every query", async (backend) => {
  const x = await inputs(backend, { B: 2, Hkv: 2, group: 2, Sq: 3, N: 1, D: 8, seed: 11 });
  const v = await x.v.data();
  for (
    const r of [
      flashAttention(x.q, x.k, x.v, { returnLse: true }),
      flashAttention(x.q, x.k, x.v, { returnLse: true, numSplits: 4 }),
      leanAttention(x.q, x.k, x.v, { returnLse: true, grid: 5 }),
    ]
  ) {
    const out = await r.out.data();
    for (let b = 0; b < 2; b++) {
      for (let h = 0; h < 4; h++) {
        for (let i = 0; i < 3; i++) {
          for (let d = 0; d < 8; d++) {
            const want = v[(b * 2 + (h >> 1)) * 8 + d];
            const got = out[((b * 4 + h) * 3 + i) * 8 + d];
            assert(Math.abs(got - want) <= 1e-6 * Math.abs(want), `out ${got} vs V[0] ${want}`);
          }
        }
      }
    }
    await check(x, r, "N = 1");
  }
  dispose(x);
});

describeBackends("N = tile − 1, tile, tile + 1", async (backend) => {
  for (const N of [63, 64, 65]) {
    const x = await inputs(backend, { B: 2, Hkv: 1, group: 2, Sq: 1, N, D: 16, seed: N });
    await check(x, flashAttention(x.q, x.k, x.v, { returnLse: true, blockN: 64 }), `flash N=${N}`);
    await check(
      x,
      flashAttention(x.q, x.k, x.v, { returnLse: true, blockN: 64, numSplits: 2 }),
      `flash-decoding N=${N}`,
    );
    for (const grid of [1, 2, 3]) {
      await check(
        x,
        leanAttention(x.q, x.k, x.v, { returnLse: true, tileSize: 64, grid }),
        `lean N=${N} grid=${grid}`,
      );
    }
    dispose(x);
  }
});

describeBackends("fewer tiles than workers", async (backend) => {
  const x = await inputs(backend, { B: 1, Hkv: 2, group: 1, Sq: 1, N: 40, D: 16, seed: 3 });
  const opts = { returnLse: true, tileSize: 16, grid: 50 } as const;
  const s = leanAttentionSchedule(x.q, x.k, x.v, opts);
  assertEquals(s.totalTiles, 6);
  assertEquals(s.workers.filter((w) => w.length === 0).length, 44);
  await check(x, leanAttention(x.q, x.k, x.v, opts), "lean grid 50, 6 tiles");
  await check(
    x,
    flashAttention(x.q, x.k, x.v, { returnLse: true, blockN: 16, numSplits: 16 }),
    "flash-decoding 16 splits of 3 blocks",
  );
  dispose(x);
});

describeBackends("one unit across every worker", async (backend) => {
  const x = await inputs(backend, {
    B: 1,
    Hkv: 1,
    group: 3,
    Sq: 2,
    N: 640,
    D: 32,
    causal: true,
    seed: 5,
  });
  const opts = { returnLse: true, tileSize: 64, grid: 10, causal: true } as const;
  const s = leanAttentionSchedule(x.q, x.k, x.v, opts);
  assertEquals(s.cuts.length, 1);
  assertEquals(s.cuts[0].partials.length, 10);
  await check(x, leanAttention(x.q, x.k, x.v, opts), "lean, 1 unit, 10 workers");
  dispose(x);
});

describeBackends("one worker across many units", async (backend) => {
  const x = await inputs(backend, {
    B: 4,
    Hkv: 4,
    group: 2,
    Sq: 1,
    N: 90,
    D: 16,
    kvLens: [90, 3, 0, 64],
    seed: 9,
  });
  const opts = { returnLse: true, tileSize: 32, grid: 1, kvLens: x.c.kvLens } as const;
  const s = leanAttentionSchedule(x.q, x.k, x.v, opts);
  assertEquals(s.workers[0].length, 12); // every unit with keys, in one run
  assertEquals(s.cuts.length, 0);
  await check(x, leanAttention(x.q, x.k, x.v, opts), "lean grid 1");
  dispose(x);
});

describeBackends("logits of ±1e4 stay finite and match", async (backend) => {
  // |q·k·scale| up to ~1e4: the softmax is nearly one-hot; any unstabilised exp overflows.
  for (const causal of [false, true]) {
    const x = await inputs(
      backend,
      { B: 2, Hkv: 2, group: 2, Sq: 2, N: 150, D: 16, seed: 21, causal },
      2e3,
    );
    const big = maxAbs(x.ref.lse.filter(Number.isFinite));
    assert(big > 1e3, `logits are not large (max |lse| ${big})`);
    // float32 scores carry ~|logit|·2⁻²⁴·D absolute error, which moves the weights relatively.
    const tol = tolerances(x);
    const tolOut = tol.out + maxAbs(x.ref.out) * big * 2 ** -24 * 16;
    const tolLse = tol.lse + big * 2 ** -24 * 16;
    for (
      const [name, r] of [
        ["flash", flashAttention(x.q, x.k, x.v, { returnLse: true, causal })],
        [
          "flash-decoding",
          flashAttention(x.q, x.k, x.v, { returnLse: true, causal, numSplits: 3 }),
        ],
        ["lean", leanAttention(x.q, x.k, x.v, { returnLse: true, causal, grid: 7, tileSize: 16 })],
      ] as const
    ) {
      const o = await r.out.data();
      const l = await r.lse.data();
      assert(o.every(Number.isFinite), `${name}: non-finite output`);
      const eo = maxAbsDiff(o, x.ref.out);
      const el = maxAbsDiff(l, x.ref.lse);
      assert(eo <= tolOut, `${name}: out error ${eo} > ${tolOut}`);
      assert(el <= tolLse, `${name}: lse error ${el} > ${tolLse}`);
    }
    dispose(x);
  }
});

describeBackends("a length-0 sequence among others gives out 0 and lse −∞", async (backend) => {
  const x = await inputs(backend, {
    B: 3,
    Hkv: 1,
    group: 2,
    Sq: 2,
    N: 70,
    D: 8,
    kvLens: [70, 0, 9],
    causal: true,
    seed: 4,
  });
  const common = { returnLse: true, kvLens: x.c.kvLens, causal: true } as const;
  for (
    const r of [
      flashAttention(x.q, x.k, x.v, common),
      flashAttention(x.q, x.k, x.v, { ...common, numSplits: 3, blockN: 8 }),
      leanAttention(x.q, x.k, x.v, { ...common, grid: 4, tileSize: 8 }),
    ]
  ) {
    const out = await r.out.data();
    const lse = await r.lse.data();
    // batch 1: rows 4..7 of lse, 32..63 of out
    assertEquals(Array.from(lse.subarray(4, 8)), [-Infinity, -Infinity, -Infinity, -Infinity]);
    assert(out.subarray(32, 64).every((x) => x === 0), "out of the empty sequence is not 0");
    await check(x, r, "length-0 sequence");
  }
  dispose(x);
});

Deno.test("flash picks flash for 1 split and flash-decoding schedules otherwise", () => {
  const q = randn([2, 4, 1, 8], { seed: 1 });
  const k = randn([2, 2, 500, 8], { seed: 2 });
  const s1 = flashSchedule(q, k, k);
  assertEquals(s1.kind, "split");
  assertEquals(s1.workers.length, 4);
  assertEquals(s1.cuts.length, 0);
  const s4 = flashSchedule(q, k, k, { numSplits: 4, blockN: 32 });
  assertEquals(s4.workers.length, 16);
  assertEquals(s4.cuts.length, 4);
  // Query blocks of at most 64 rows: 130 rows → 3 blocks per (batch, kv-head).
  const qLong = randn([2, 4, 130, 8], { seed: 3 });
  assertEquals(flashSchedule(qLong, k, k).units.length, 12);
  assertEquals(leanAttentionSchedule(qLong, k, k).plan.qBlocks, 3);
});

Deno.test({
  name: "cpuAttentionParallel matches the in-thread executor bit for bit",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const backend = cpu();
    try {
      await fc.assert(
        fc.asyncProperty(caseArb, fc.integer({ min: 1, max: 5 }), async (d, threads) => {
          const c = toCase(d);
          const x = await inputs(backend, c);
          const opts = { kvLens: c.kvLens, causal: c.causal, tileSize: d.tileSize, grid: 9 };
          const schedule = leanAttentionSchedule(x.q, x.k, x.v, opts);
          const params = plainRun({
            algo: "lean" as const,
            scale: c.scale ?? 1 / Math.sqrt(c.D),
            causal: !!c.causal,
            kvLens: Int32Array.from(c.kvLens ?? []),
            schedule,
          });
          const serial = cpuAttention(x.q, x.k, x.v, params);
          const par = await cpuAttentionParallel(x.q, x.k, x.v, params, { threads });
          assertEquals(par.out, serial.out);
          assertEquals(par.lse, serial.lse);
          dispose(x);
        }),
        { numRuns: 15 },
      );
    } finally {
      closeAttentionWorkers();
    }
  },
});

describeBackends(
  "NaN keys: masked ones change nothing, visible ones touch only their rows",
  async (backend) => {
    const [B, Hkv, group, Sq, N, D] = [2, 2, 2, 3, 40, 8];
    const base = await inputs(backend, { B, Hkv, group, Sq, N, D, seed: 31 });
    const kv = await base.k.data();
    // Key 30 of (batch 0, kv-head 1) and key 39 of (batch 1, kv-head 0) become NaN.
    kv.fill(NaN, ((0 * Hkv + 1) * N + 30) * D, ((0 * Hkv + 1) * N + 31) * D);
    kv.fill(NaN, ((1 * Hkv + 0) * N + 39) * D, ((1 * Hkv + 0) * N + 40) * D);
    const k = tensor(kv, { shape: [B, Hkv, N, D], backend });
    const q = base.q;
    const v = base.v;
    const qd = await q.data();
    const vd = await v.data();
    const run = (opts: { kvLens?: number[]; causal?: boolean }) => [
      flashAttention(q, k, v, { ...opts, returnLse: true }),
      flashAttention(q, k, v, { ...opts, returnLse: true, numSplits: 3, blockN: 8 }),
      leanAttention(q, k, v, { ...opts, returnLse: true, tileSize: 7, grid: 5 }),
    ];
    // Lengths that mask both NaN keys: results are finite and match the reference.
    const masked = { kvLens: [30, 39], causal: true };
    const x: Inputs = {
      q,
      k,
      v,
      c: { B, Hkv, group, Sq, N, D, seed: 31, ...masked },
      ref: referenceAttention({
        q: qd,
        k: kv,
        v: vd,
        B,
        Hq: Hkv * group,
        Hkv,
        Sq,
        N,
        D,
        ...masked,
      }),
    };
    for (const r of run(masked)) await check(x, r, "NaN keys beyond kvLens");
    // Full lengths, causal: a row is NaN iff it sees a NaN key (query i sees keys < N − Sq + i + 1).
    for (const r of run({ causal: true })) {
      const out = await r.out.data();
      const lse = await r.lse.data();
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < Hkv * group; h++) {
          for (let i = 0; i < Sq; i++) {
            const row = (b * Hkv * group + h) * Sq + i;
            const hk = Math.floor(h / group);
            const bad = (b === 0 && hk === 1 && 30 < N - Sq + i + 1) ||
              (b === 1 && hk === 0 && 39 < N - Sq + i + 1);
            const o = out.subarray(row * D, (row + 1) * D);
            if (bad) {
              // WGSL lets implementations assume no NaN; only the CPU promises the poison.
              if (backend.name === "cpu") {
                assert(o.every(Number.isNaN) && Number.isNaN(lse[row]), `row ${row}: not NaN`);
              }
            } else {
              assert(o.every(Number.isFinite) && Number.isFinite(lse[row]), `row ${row} poisoned`);
            }
          }
        }
      }
    }
    dispose(base);
    k.dispose();
  },
);

describeBackends(
  "decode: a running max that rises late or falls early gives the reference (GQA and MHA)",
  async (backend) => {
    // The GPU kernel reduces a batch's max across lanes only when some score exceeds the
    // running max (a vote): keys whose norm rises along the sequence make new maxima in
    // late batches (the reduction must run there: late scores exceed the first batches' by
    // far more than the 88 that overflows exp in float32), falling ones make them early
    // (later batches skip it). D = 64 runs the subgroup kernel on GPUs with subgroups.
    const [B, Hkv, N, D] = [2, 2, 1000, 64];
    for (const group of [1, 4]) {
      const Hq = Hkv * group;
      const q = randn([B, Hq, 1, D], { seed: 61 + group, backend });
      const kd = await randn([B, Hkv, N, D], { seed: 67, backend }).data();
      for (let row = 0; row < B * Hkv; row++) {
        for (let n = 0; n < N; n++) {
          const t = row % 2 ? 1 - n / N : n / N;
          const f = 0.25 + 60 * t * t;
          for (let d = 0; d < D; d++) kd[(row * N + n) * D + d] *= f;
        }
      }
      const k = tensor(kd, { shape: [B, Hkv, N, D], backend });
      const v = randn([B, Hkv, N, D], { seed: 71, backend });
      const ref = referenceAttention({
        q: await q.data(),
        k: kd,
        v: await v.data(),
        B,
        Hq,
        Hkv,
        Sq: 1,
        N,
        D,
      });
      const runs = {
        lean: leanAttention(q, k, v, { tileSize: 16, grid: 7 }),
        "lean default": leanAttention(q, k, v),
        "flash-decoding": flashAttention(q, k, v, { numSplits: 3, blockN: 16 }),
        flash: flashAttention(q, k, v),
      };
      // float32 sums over N keys of terms ≤ max|v|: a few ulps of the values averaged, grown
      // slowly with N (as tolerances() above).
      const tol = 1e-5 * Math.max(maxAbs(ref.out), ref.mag) * Math.max(1, Math.log2(N) / 4);
      for (const [name, t] of Object.entries(runs)) {
        const e = maxAbsDiff(await t.data(), ref.out);
        assert(e <= tol, `${name}, group ${group} on ${backend.name}: error ${e} > ${tol}`);
        t.dispose();
      }
      for (const t of [q, k, v]) t.dispose();
    }
  },
);

describeBackends(
  "decode: a ±∞ value in the last key of a segment comes out ±∞, not NaN",
  async (backend) => {
    // D = 64 runs the subgroup kernel on GPUs with subgroups; segments whose length is not a
    // multiple of the kernel's key batch make its lanes re-read the segment's last key (the
    // index is clamped), whose P·V term must not be 0 · ∞ = NaN.
    const [B, Hkv, N, D] = [1, 2, 300, 64];
    for (const group of [1, 4]) {
      const Hq = Hkv * group;
      const q = randn([B, Hq, 1, D], { seed: 41 + group, backend });
      const k = randn([B, Hkv, N, D], { seed: 43, backend });
      const vd = await randn([B, Hkv, N, D], { seed: 47, backend }).data();
      const opts = { tileSize: 16, grid: 7 } as const;
      const sched = leanAttentionSchedule(q, k, k, opts);
      // The last key of every segment, in column (key % D), gets ±∞ (sign alternating).
      const ends: { h: number; key: number }[] = [];
      for (const run of sched.workers) {
        for (const s of run) {
          const u = sched.units[s.unit];
          ends.push({ h: u.kvHead, key: Math.min(u.keys, s.tileEnd * 16) - 1 });
        }
      }
      ends.forEach(({ h, key }, i) => {
        vd[(h * N + key) * D + (key % D)] = i % 2 ? -Infinity : Infinity;
      });
      const v = tensor(vd, { shape: [B, Hkv, N, D], backend });
      const ref = referenceAttention({
        q: await q.data(),
        k: await k.data(),
        v: vd,
        B,
        Hq,
        Hkv,
        Sq: 1,
        N,
        D,
      });
      const runs = {
        lean: leanAttention(q, k, v, opts),
        "flash-decoding": flashAttention(q, k, v, { numSplits: 3, blockN: 16 }),
        flash: flashAttention(q, k, v),
      };
      const tol = 2e-5 * maxAbs(ref.out.filter(Number.isFinite)) * 4;
      for (const [name, t] of Object.entries(runs)) {
        const out = await t.data();
        out.forEach((x, i) => {
          const r = ref.out[i];
          const good = Number.isFinite(r) ? Math.abs(x - r) <= tol : Object.is(x, r);
          assert(good, `${name}, group ${group}: out[${i}] = ${x}, reference ${r}`);
        });
        t.dispose();
      }
      for (const t of [q, k, v]) t.dispose();
    }
  },
);
