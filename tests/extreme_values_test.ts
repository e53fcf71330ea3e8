/**
 * Non-finite and extreme values: NaN/±∞ and huge finite inputs through every algorithm and
 * backend, against the float64 reference.
 *
 * The reference's semantics of non-finite inputs (testing/reference.ts), which every algorithm
 * must reproduce: a row reads exactly its visible keys (j < kvLens[b], and j < len − Sq + i + 1
 * under the causal mask) and computes `s_j = scale·q·k_j`, `m = max s_j`, `w_j = exp(s_j − m)`,
 * `out = Σ w_j v_j / Σ w_j`, `lse = m + ln Σ w_j` in IEEE arithmetic. Consequences: a NaN in
 * q or in a visible key row makes that row's out and lse NaN (through m); a +∞ score gives
 * `∞ − ∞ = NaN`, so also NaN; a −∞ score is a key with weight 0; a NaN or ±∞ in a visible
 * value row makes only the matching output column non-finite (`w·∞ = ∞`, `0·∞ = NaN`,
 * `∞ − ∞ = NaN`) and leaves lse alone; anything in a hidden key or value row (beyond kvLens
 * or in the causal future) changes nothing. Rows with no visible key give out 0, lse −∞.
 */
import { ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import type { Backend } from "../backends/backend.ts";
import { tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { normals, uniformGenerator } from "../tensor/random.ts";
import { referenceAttention } from "../testing/reference.ts";
import { compareIeee, runAlgo } from "./regress/cases.ts";
import { describeBackends, numRuns } from "./_backends.ts";

const ALGOS = ["naive", "flash", "flash-decoding", "lean"] as const;

interface ValueCase {
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  N: number;
  D: number;
  causal: boolean;
  kvLens?: number[];
  scale?: number;
  tile: number;
  numSplits: number;
  grid: number;
}

const spike = fc.record({
  where: fc.constantFrom("q", "k", "v"),
  at: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  value: fc.constantFrom(NaN, Infinity, -Infinity),
  row: fc.boolean(), // the whole D-vector, else one element
});

const valueCase = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  Hkv: fc.integer({ min: 1, max: 2 }),
  group: fc.integer({ min: 1, max: 3 }),
  Sq: fc.integer({ min: 1, max: 4 }),
  N: fc.integer({ min: 1, max: 40 }),
  D: fc.integer({ min: 1, max: 8 }),
  causal: fc.boolean(),
  lens: fc.option(
    fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), { minLength: 2 }),
  ),
  tile: fc.integer({ min: 1, max: 16 }),
  numSplits: fc.integer({ min: 2, max: 6 }),
  grid: fc.integer({ min: 1, max: 9 }),
  spikes: fc.array(spike, { minLength: 1, maxLength: 4 }),
  seed: fc.integer({ min: 0, max: 1_000_000 }),
});

/** Tolerances for the finite entries (the non-finite ones must match exactly). */
function finiteTolerance(ref: ArrayLike<number>, floor: number, N: number): number {
  let m = floor;
  for (let i = 0; i < ref.length; i++) {
    if (Number.isFinite(ref[i])) m = Math.max(m, Math.abs(ref[i]));
  }
  return 2e-5 * m * Math.max(1, Math.log2(N) / 4);
}

/**
 * Output entries the contract leaves open: column d of a row that has a visible key with
 * score −∞ (weight 0) whose value in column d is NaN or ±∞. IEEE says `0·∞ = NaN`; a kernel
 * that skips a tile of −∞ scores never forms the product. Only there may results differ.
 */
function unspecified(
  c: ValueCase,
  x: { q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number> },
): Uint8Array {
  const skip = new Uint8Array(c.B * c.Hq * c.Sq * c.D);
  const scale = c.scale ?? 1 / Math.sqrt(c.D);
  const group = c.Hq / c.Hkv;
  for (let b = 0; b < c.B; b++) {
    const len = c.kvLens?.[b] ?? c.N;
    for (let h = 0; h < c.Hq; h++) {
      const kv = ((b * c.Hkv + Math.floor(h / group)) * c.N) * c.D;
      for (let i = 0; i < c.Sq; i++) {
        const row = ((b * c.Hq + h) * c.Sq + i) * c.D;
        const visible = c.causal ? Math.max(0, Math.min(len, len - c.Sq + i + 1)) : len;
        for (let j = 0; j < visible; j++) {
          let dot = 0;
          for (let d = 0; d < c.D; d++) dot += x.q[row + d] * x.k[kv + j * c.D + d];
          if (scale * dot !== -Infinity) continue;
          for (let d = 0; d < c.D; d++) {
            if (!Number.isFinite(x.v[kv + j * c.D + d])) skip[row + d] = 1;
          }
        }
      }
    }
  }
  return skip;
}

/** Runs every algorithm on the given values and checks out and lse against the reference. */
async function checkAgainstReference(
  backend: Backend,
  c: ValueCase,
  data: { q: Float32Array; k: Float32Array; v: Float32Array },
  dtype: DType,
  what: string,
): Promise<void> {
  const q = tensor(data.q, { shape: [c.B, c.Hq, c.Sq, c.D], dtype, backend });
  const k = tensor(data.k, { shape: [c.B, c.Hkv, c.N, c.D], dtype, backend });
  const v = tensor(data.v, { shape: [c.B, c.Hkv, c.N, c.D], dtype, backend });
  // The reference sees the stored (rounded) values.
  const stored = { q: await q.data(), k: await k.data(), v: await v.data() };
  const ref = referenceAttention({ ...c, ...stored });
  const open = unspecified(c, stored);
  const settle = (out: Float32Array) => out.map((x, i) => (open[i] ? ref.out[i] : x));
  // An output is a weighted mean of V rows: its rounding error scales with the values averaged
  // (`ref.mag`), not with the mean, which cancellation can make tiny (an output of 2.8e-4 from
  // values near 1 was off by 2.9e-8, a quarter of float32's epsilon of the values, against a
  // bound of 2e-8 taken from the outputs alone).
  const tolOut = finiteTolerance(ref.out, Math.max(1e-3, ref.mag), c.N) +
    (dtype === "float16" ? 2 * 2 ** -11 * finiteTolerance(ref.out, 0, 1) / 2e-5 : 0);
  const tolLse = finiteTolerance(ref.lse, 1, c.N);
  const states = ALGOS.map((a) => [a, runAlgo(a, q, k, v, c)] as const);
  try {
    for (const [algo, s] of states) {
      const out = settle(await s.out.data());
      const lse = await s.lse.data();
      const eo = compareIeee(out, ref.out, tolOut);
      const el = compareIeee(lse, ref.lse, tolLse);
      assert(eo === null, `${what}: ${algo} out ${eo} (${JSON.stringify(c)})`);
      assert(el === null, `${what}: ${algo} lse ${el} (${JSON.stringify(c)})`);
    }
  } finally {
    for (const [, s] of states) {
      s.out.dispose();
      s.lse.dispose();
    }
    for (const t of [q, k, v]) t.dispose();
  }
}

/**
 * Draws cases and spikes of NaN/±∞; with `scores: false` spikes land only in V (anywhere)
 * and in K rows past kvLens, so no visible score is non-finite.
 */
async function nonFiniteProperty(backend: Backend, scores: boolean): Promise<void> {
  await fc.assert(
    fc.asyncProperty(valueCase, async (d) => {
      const c: ValueCase = {
        B: d.B,
        Hq: d.Hkv * d.group,
        Hkv: d.Hkv,
        Sq: d.Sq,
        N: d.N,
        D: d.D,
        causal: d.causal,
        kvLens: d.lens
          ? Array.from(
            { length: d.B },
            (_, b) => Math.floor(d.lens![b % d.lens!.length] * (d.N + 1)),
          )
          : undefined,
        tile: d.tile,
        numSplits: d.numSplits,
        grid: d.grid,
      };
      const data = {
        q: normals(c.B * c.Hq * c.Sq * c.D, d.seed),
        k: normals(c.B * c.Hkv * c.N * c.D, d.seed + 1),
        v: normals(c.B * c.Hkv * c.N * c.D, d.seed + 2),
      };
      for (const s of d.spikes) {
        const which = !scores && s.where === "q" ? "v" : s.where as "q" | "k" | "v";
        const arr = data[which];
        const i = Math.floor(s.at * arr.length);
        if (!scores && which === "k") {
          const key = Math.floor(i / c.D);
          const b = Math.floor(key / (c.Hkv * c.N));
          if (key % c.N < (c.kvLens?.[b] ?? c.N)) continue; // visible: not in this property
        }
        if (s.row) arr.fill(s.value, i - (i % c.D), i - (i % c.D) + c.D);
        else arr[i] = s.value;
      }
      await checkAgainstReference(backend, c, data, "float32", "non-finite");
    }),
    { numRuns: numRuns(backend, 100) },
  );
}

describeBackends(
  "NaN and ±∞ in V, and in hidden keys, behave exactly as in the float64 reference",
  (backend) => nonFiniteProperty(backend, false),
);

describeBackends(
  "NaN and ±∞ anywhere in q, k or v (non-finite scores) behave exactly as in the reference",
  (backend) => nonFiniteProperty(backend, true),
);

// A case the property above once drew (seed 348909, shrunk): row 0 is NaN (a NaN in q), row 1
// averages values near 1 into 2.8e-4. Its error (2.9e-8 from lavapipe's naive kernel) was over a
// bound taken from the outputs alone; the bound now follows the values averaged (`ref.mag`).
describeBackends("an output made small by cancellation, beside a NaN row", async (backend) => {
  const c: ValueCase = {
    B: 1,
    Hq: 2,
    Hkv: 2,
    Sq: 1,
    N: 4,
    D: 1,
    causal: false,
    tile: 1,
    numSplits: 2,
    grid: 1,
  };
  const data = { q: normals(2, 348909), k: normals(8, 348910), v: normals(8, 348911) };
  data.q[0] = NaN;
  await checkAgainstReference(backend, c, data, "float32", "cancellation");
});

Deno.test("referenceAttention: mag is the largest sum of |weight · value| of an output", () => {
  // Equal scores: weights ½, ½. Column 0 averages 3 and −3 (out 0, mag 3), column 1 1 and 2.
  const ref = referenceAttention({
    q: [0, 0],
    k: [0, 0, 0, 0],
    v: [3, 1, -3, 2],
    B: 1,
    Hq: 1,
    Hkv: 1,
    Sq: 1,
    N: 2,
    D: 2,
  });
  assert(ref.out[0] === 0 && ref.out[1] === 1.5, `out ${ref.out}`);
  assert(ref.mag === 3, `mag ${ref.mag}, want 3`);
});

describeBackends(
  "extreme finite values: logits of ±1e4, values of 1e30, float16 values near 65504",
  async (backend) => {
    const c: ValueCase = {
      B: 2,
      Hq: 4,
      Hkv: 2,
      Sq: 3,
      N: 50,
      D: 4,
      causal: true,
      kvLens: [50, 17],
      scale: 1,
      tile: 8,
      numSplits: 3,
      grid: 5,
    };
    const nq = c.B * c.Hq * c.Sq * c.D;
    const nk = c.B * c.Hkv * c.N * c.D;
    const u = uniformGenerator(7);
    const ints = (n: number, max: number) =>
      Float32Array.from({ length: n }, () => Math.round((2 * u() - 1) * max));
    // Integer q and k make every logit an exact integer up to ±1e4 in float32 and float16,
    // so the only rounding left is the softmax's own: a tight check of its stability.
    const logits = { q: ints(nq, 100), k: ints(nk, 25), v: normals(nk, 8) };
    for (const dtype of ["float32", "float16"] as const) {
      await checkAgainstReference(backend, c, logits, dtype, `logits ±1e4 ${dtype}`);
    }
    const d = { ...c, scale: undefined, D: 16, causal: false };
    const n16 = (n: number) => d.B * (n === 0 ? d.Hq * d.Sq : d.Hkv * d.N) * d.D;
    const huge = {
      q: normals(n16(0), 9),
      k: normals(n16(1), 10),
      v: normals(n16(1), 11).map((x) => x * 1e30),
    };
    await checkAgainstReference(backend, d, huge, "float32", "values 1e30");
    // Values at and just below the largest float16: every output must stay finite.
    const top = normals(n16(1), 12).map((x, i) =>
      i % 7 === 0 ? Math.sign(x) * 65504 : Math.sign(x) * (60000 + Math.abs(x) * 1000)
    );
    const near = { q: normals(n16(0), 13), k: normals(n16(1), 14), v: top };
    await checkAgainstReference(backend, d, near, "float16", "float16 values near 65504");
  },
);
