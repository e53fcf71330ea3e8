/**
 * naiveAttention against the float64 reference on random problems: GQA/MQA groups, ragged
 * kvLens (including 0), causal with Sq > 1, N = 0, float16 storage, and hostile inputs.
 */
import fc from "npm:fast-check@4.10.2";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { naiveAttention } from "../attention/naive.ts";
import { tensor } from "../tensor/creation.ts";
import { type DType, epsilon } from "../tensor/dtype.ts";
import { normals } from "../tensor/random.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { maxAbs, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { describeBackends, numRuns } from "./_backends.ts";

interface Problem {
  B: number;
  Hkv: number;
  G: number;
  Sq: number;
  N: number;
  D: number;
  causal: boolean;
  kvLens?: number[];
  scale?: number;
  seed: number;
  dtype: DType;
}

const problemArb: fc.Arbitrary<Problem> = fc.record({
  B: fc.integer({ min: 1, max: 3 }),
  Hkv: fc.integer({ min: 1, max: 3 }),
  G: fc.integer({ min: 1, max: 4 }),
  Sq: fc.integer({ min: 1, max: 5 }),
  N: fc.integer({ min: 0, max: 13 }),
  D: fc.integer({ min: 1, max: 16 }),
  causal: fc.boolean(),
  raggedSeed: fc.option(fc.integer({ min: 0, max: 1e6 }), { nil: undefined }),
  scale: fc.option(fc.double({ min: 0.01, max: 2, noNaN: true }), { nil: undefined }),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  dtype: fc.constantFrom<DType>("float32", "float16"),
}).map(({ raggedSeed, ...p }) => ({
  ...p,
  // Ragged lengths from a seed so every value in 0..N is reachable, 0 and N included.
  kvLens: raggedSeed === undefined
    ? undefined
    : Array.from({ length: p.B }, (_, b) => (raggedSeed * 7919 + b * 104729) % (p.N + 1)),
}));

function rounded(values: Float32Array, dtype: DType): Float32Array {
  if (dtype === "float16") {
    for (let i = 0; i < values.length; i++) values[i] = Math.f16round(values[i]);
  }
  return values;
}

function inputs(backend: Backend, p: Problem) {
  const Hq = p.Hkv * p.G;
  const qs = [p.B, Hq, p.Sq, p.D];
  const ks = [p.B, p.Hkv, p.N, p.D];
  const qv = rounded(normals(p.B * Hq * p.Sq * p.D, p.seed), p.dtype);
  const kv = rounded(normals(p.B * p.Hkv * p.N * p.D, p.seed + 1), p.dtype);
  const vv = rounded(normals(p.B * p.Hkv * p.N * p.D, p.seed + 2), p.dtype);
  return {
    Hq,
    qv,
    kv,
    vv,
    q: tensor(qv, { shape: qs, dtype: p.dtype, backend }),
    k: tensor(kv, { shape: ks, dtype: p.dtype, backend }),
    v: tensor(vv, { shape: ks, dtype: p.dtype, backend }),
  };
}

/**
 * float32: about 1e-5·max|ref|, growing slowly with the number of keys.
 * float16: at most twice the error of rounding the exact result to float16 (the best a
 * float16 output can do), plus the float32 allowance for the arithmetic.
 */
function outTolerance(ref: Float64Array, dtype: DType, N: number): number {
  const f32 = 1e-5 * maxAbs(ref) * (1 + Math.log2(1 + N));
  if (dtype === "float32") return f32;
  return 2 * maxAbsDiff(Float64Array.from(ref, Math.f16round), ref) + f32 + 1e-7;
}

function lseTolerance(lse: Float64Array, N: number): number {
  let m = 1;
  for (const x of lse) if (Number.isFinite(x)) m = Math.max(m, Math.abs(x));
  return 1e-5 * m * (1 + Math.log2(1 + N));
}

/** Query rows with no visible key, per the contract. */
function emptyRows(p: Problem): boolean[] {
  const Hq = p.Hkv * p.G;
  const rows: boolean[] = [];
  for (let b = 0; b < p.B; b++) {
    const len = p.kvLens?.[b] ?? p.N;
    for (let h = 0; h < Hq; h++) {
      for (let i = 0; i < p.Sq; i++) {
        rows.push((p.causal ? Math.max(0, Math.min(len, len - p.Sq + i + 1)) : len) === 0);
      }
    }
  }
  return rows;
}

async function check(backend: Backend, p: Problem): Promise<void> {
  const x = inputs(backend, p);
  const ref = referenceAttention({
    q: x.qv,
    k: x.kv,
    v: x.vv,
    B: p.B,
    Hq: x.Hq,
    Hkv: p.Hkv,
    Sq: p.Sq,
    N: p.N,
    D: p.D,
    scale: p.scale,
    causal: p.causal,
    kvLens: p.kvLens,
  });
  const before = backend.memory().liveCount;
  const r = naiveAttention(x.q, x.k, x.v, {
    scale: p.scale,
    causal: p.causal,
    kvLens: p.kvLens,
    returnLse: true,
  });
  // Only the two results stay alive: every intermediate was disposed.
  assertEquals(backend.memory().liveCount, before + 2, "live storage after naiveAttention");
  assertEquals([...r.out.shape], [p.B, x.Hq, p.Sq, p.D]);
  assertEquals(r.out.dtype, p.dtype);
  assertEquals([...r.lse.shape], [p.B, x.Hq, p.Sq]);
  assertEquals(r.lse.dtype, "float32");
  const out = await r.out.data();
  const lse = await r.lse.data();
  const desc = JSON.stringify(p);

  const errOut = maxAbsDiff(out, ref.out);
  const tolOut = outTolerance(ref.out, p.dtype, p.N);
  assert(errOut <= tolOut, `out error ${errOut} > ${tolOut} for ${desc}`);
  const errLse = maxAbsDiff(lse, ref.lse);
  const tolLse = lseTolerance(ref.lse, p.N);
  assert(errLse <= tolLse, `lse error ${errLse} > ${tolLse} for ${desc}`);

  // Rows that see no key are exactly the merge identity.
  emptyRows(p).forEach((empty, row) => {
    if (!empty) return;
    assertEquals(lse[row], -Infinity, `lse of empty row ${row}`);
    for (let d = 0; d < p.D; d++) assertEquals(out[row * p.D + d], 0, `out of empty row ${row}`);
  });
  for (const t of [x.q, x.k, x.v, r.out, r.lse]) t.dispose();
}

describeBackends(
  "naiveAttention matches the float64 reference (GQA, ragged, causal, f16)",
  async (backend) => {
    await fc.assert(
      fc.asyncProperty(problemArb, (p) => check(backend, p)),
      { numRuns: numRuns(backend, 120) },
    );
  },
);

describeBackends("naiveAttention named edge cases", async (backend) => {
  const base: Problem = {
    B: 2,
    Hkv: 2,
    G: 2,
    Sq: 3,
    N: 7,
    D: 8,
    causal: false,
    seed: 11,
    dtype: "float32",
  };
  const cases: [string, Partial<Problem>][] = [
    ["N = 1", { N: 1 }],
    ["N = 0 (no keys at all)", { N: 0 }],
    ["MQA (Hkv = 1, G = Hq)", { Hkv: 1, G: 6 }],
    ["group size 1 (MHA)", { G: 1, Hkv: 3 }],
    ["ragged kvLens with a 0", { kvLens: [0, 5] }],
    ["causal, Sq > 1", { causal: true }],
    ["causal, Sq > kvLen (early rows see nothing)", { causal: true, Sq: 5, kvLens: [3, 7] }],
    ["causal + ragged + GQA, float16", { causal: true, kvLens: [4, 0], G: 3, dtype: "float16" }],
    ["decode (Sq = 1), long N", { Sq: 1, N: 200 }],
    ["explicit scale", { scale: 0.05 }],
  ];
  for (const [name, over] of cases) {
    try {
      await check(backend, { ...base, ...over });
    } catch (e) {
      throw new Error(`case "${name}": ${e instanceof Error ? e.message : e}`, { cause: e });
    }
  }
});

describeBackends(
  "naiveAttention: huge scores stay finite, NaN stays in its row",
  async (backend) => {
    const B = 1, Hq = 2, Sq = 2, N = 5, D = 4;
    const qv = normals(B * Hq * Sq * D, 3).map((x) => 300 * x);
    const kv = normals(B * Hq * N * D, 4);
    const vv = normals(B * Hq * N * D, 5);
    const ref = referenceAttention({ q: qv, k: kv, v: vv, B, Hq, Hkv: Hq, Sq, N, D });
    const q = tensor(qv, { shape: [B, Hq, Sq, D], backend });
    const k = tensor(kv, { shape: [B, Hq, N, D], backend });
    const v = tensor(vv, { shape: [B, Hq, N, D], backend });
    const { out, lse } = naiveAttention(q, k, v, { returnLse: true });
    const o = await out.data();
    const l = await lse.data();
    assert(
      o.every(Number.isFinite) && l.every(Number.isFinite),
      "huge scores gave non-finite values",
    );
    // Scores near 1e3 carry float32 rounding of about 1e3·eps, so allow that, not more.
    const sMax = maxAbs(ref.lse);
    const tol = 8 * sMax * epsilon("float32") * maxAbs(vv) + 1e-5 * maxAbs(ref.out);
    const err = maxAbsDiff(o, ref.out);
    assert(err <= tol, `huge: out error ${err} > ${tol}`);
    assert(maxAbsDiff(l, ref.lse) <= 8 * sMax * epsilon("float32"), "huge: lse error");

    const qn = qv.slice();
    qn[D] = NaN; // row 1 of head 0
    const q2 = tensor(qn, { shape: [B, Hq, Sq, D], backend });
    const r2 = naiveAttention(q2, k, v, { returnLse: true });
    const o2 = await r2.out.data();
    const l2 = await r2.lse.data();
    for (let row = 0; row < Hq * Sq; row++) {
      const nanRow = row === 1;
      assertEquals(Number.isNaN(l2[row]), nanRow, `lse NaN-ness of row ${row}`);
      for (let d = 0; d < D; d++) {
        assertEquals(Number.isNaN(o2[row * D + d]), nanRow, `out NaN-ness of row ${row}`);
      }
    }
    for (const t of [q, k, v, out, lse, q2, r2.out, r2.lse]) t.dispose();
  },
);

describeBackends(
  "naiveAttention is deterministic and returns a Tensor without returnLse",
  async (backend) => {
    const p: Problem = {
      B: 2,
      Hkv: 1,
      G: 3,
      Sq: 2,
      N: 9,
      D: 5,
      causal: true,
      kvLens: [9, 4],
      seed: 5,
      dtype: "float32",
    };
    const x = inputs(backend, p);
    const a = naiveAttention(x.q, x.k, x.v, { causal: true, kvLens: p.kvLens });
    const b = naiveAttention(x.q, x.k, x.v, { causal: true, kvLens: p.kvLens, returnLse: false });
    assert(!("lse" in a), "a Tensor, not { out, lse }");
    assertEquals(await a.data(), await b.data());
    const withLse = naiveAttention(x.q, x.k, x.v, {
      causal: true,
      kvLens: p.kvLens,
      returnLse: true,
    });
    assertEquals(await withLse.out.data(), await a.data());
    for (const t of [x.q, x.k, x.v, a, b, withLse.out, withLse.lse] as Tensor[]) t.dispose();
  },
);

describeBackends("naiveAttention ignores large finite values in hidden keys", async (backend) => {
  const B = 2, Hq = 2, Sq = 3, N = 6, D = 4;
  const kvLens = [4, 1];
  const qv = normals(B * Hq * Sq * D, 21);
  const kv = normals(B * Hq * N * D, 22);
  const vv = normals(B * Hq * N * D, 23);
  // Keys past kvLens hold values that would dominate every score and output if they leaked.
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      for (let j = kvLens[b]; j < N; j++) {
        const o = ((b * Hq + h) * N + j) * D;
        kv.fill(1e3, o, o + D);
        vv.fill(1e6, o, o + D);
      }
    }
  }
  const ref = referenceAttention({
    q: qv,
    k: kv,
    v: vv,
    B,
    Hq,
    Hkv: Hq,
    Sq,
    N,
    D,
    kvLens,
    causal: true,
  });
  const q = tensor(qv, { shape: [B, Hq, Sq, D], backend });
  const k = tensor(kv, { shape: [B, Hq, N, D], backend });
  const v = tensor(vv, { shape: [B, Hq, N, D], backend });
  const r = naiveAttention(q, k, v, { kvLens, causal: true, returnLse: true });
  const err = maxAbsDiff(await r.out.data(), ref.out);
  assert(err <= 1e-5 * maxAbs(ref.out) * 4, `out error ${err}`);
  assert(maxAbsDiff(await r.lse.data(), ref.lse) <= 1e-4, "lse error");
  for (const t of [q, k, v, r.out, r.lse]) t.dispose();
});
