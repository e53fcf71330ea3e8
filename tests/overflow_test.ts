/**
 * Values up to float32's max where the answer is finite: the running states of flash,
 * flash-decoding and lean (float32 on the GPU, float32 tile sums on the CPU) must not
 * overflow. `out = Σ w·v / Σ w` is at most max |v|, but the unnormalised `Σ p·v` of a state
 * grows to (keys) · max |v| — +∞ from 6e36 over 256 keys before the fix. Every algorithm,
 * several schedules and tile sizes, against the float64 reference, finite wherever it is.
 *
 * @module
 */
import { ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import type { VariantOptions } from "../attention/_variant.ts";
import { tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { normals, uniformGenerator } from "../tensor/random.ts";
import { attentionTolerances, referenceAttention } from "../testing/reference.ts";
import { type Algo, compareIeee, type RegressCase, runAlgo } from "./regress/cases.ts";
import { describeBackends, webgpuBackend } from "./_backends.ts";
import type { AttentionTuning } from "../backends/webgpu/attention/mod.ts";

type Shape = Pick<RegressCase, "B" | "Hq" | "Hkv" | "Sq" | "N" | "D" | "causal" | "kvLens">;

interface Run {
  algo: Algo;
  tile: number;
  numSplits: number;
  grid: number;
}

/** Naive; flash at several tile sizes; flash-decoding and lean at several splits and grids. */
function runsFor(N: number, small: boolean): Run[] {
  const r = (algo: Algo, tile: number, numSplits = 1, grid = 1): Run => ({
    algo,
    tile,
    numSplits,
    grid,
  });
  const all = [
    r("naive", 64),
    r("flash", 64),
    r("flash", N),
    r("flash", 1),
    r("flash-decoding", 16, 2),
    r("flash-decoding", 32, 5),
    r("lean", 16, 1, 1),
    r("lean", 8, 1, 3),
    r("lean", 64, 1, 7),
  ];
  // The software adapter is slow: a few schedules cover each kernel path.
  return small ? all.filter((_, i) => i % 2 === 0 || i === 1) : all;
}

/** Runs every schedule of {@link runsFor} and checks out and lse against the reference. */
async function check(
  backend: Backend,
  c: Shape,
  data: { q: ArrayLike<number>; k: ArrayLike<number>; v: ArrayLike<number> },
  dtype: DType,
  what: string,
  variant: VariantOptions & { sinks?: number[] } = {},
): Promise<void> {
  const q = tensor(Float32Array.from(data.q), { shape: [c.B, c.Hq, c.Sq, c.D], dtype, backend });
  const k = tensor(Float32Array.from(data.k), { shape: [c.B, c.Hkv, c.N, c.D], dtype, backend });
  const v = tensor(Float32Array.from(data.v), { shape: [c.B, c.Hkv, c.N, c.D], dtype, backend });
  try {
    // The reference sees the stored (rounded) values.
    const stored = { q: await q.data(), k: await k.data(), v: await v.data() };
    const ref = referenceAttention({ ...c, ...stored, sinks: variant.sinks });
    for (let i = 0; i < ref.out.length; i++) {
      assert(Number.isFinite(ref.out[i]), `${what}: the reference is not finite at ${i}`);
    }
    const tol = attentionTolerances(ref, c.N, dtype);
    for (const run of runsFor(c.N, backend.name !== "cpu")) {
      const s = runAlgo(run.algo, q, k, v, { ...c, ...run }, variant);
      try {
        const eo = compareIeee(await s.out.data(), ref.out, tol.out);
        const el = compareIeee(await s.lse.data(), ref.lse, tol.lse);
        const at = `${what}: ${JSON.stringify(run)}`;
        assert(eo === null, `${at} out ${eo}`);
        assert(el === null, `${at} lse ${el}`);
      } finally {
        s.out.dispose();
        s.lse.dispose();
      }
    }
  } finally {
    for (const t of [q, k, v]) t.dispose();
  }
}

/** `n` values of magnitude up to `top`, random signs (seeded). */
function mixed(n: number, top: number, seed: number): Float32Array {
  const u = uniformGenerator(seed);
  return Float32Array.from({ length: n }, () => (2 * u() - 1) * top);
}

describeBackends(
  "uniform weights over 256 keys with values up to float32's max stay finite and accurate",
  async (backend) => {
    for (const D of [8, 32]) {
      const c: Shape = { B: 1, Hq: 1, Hkv: 1, Sq: 1, N: 256, D };
      const zq = new Float32Array(D);
      const zk = new Float32Array(c.N * D);
      // 1e-30: the scaled probabilities must not push small values into underflow either.
      for (const x of [6e36, 1e38, -3.4e38, 3.4e38, 1e-30]) {
        const v = new Float32Array(c.N * D).fill(x);
        await check(backend, c, { q: zq, k: zk, v }, "float32", `uniform ${x}, D ${D}`);
      }
    }
  },
);

describeBackends(
  "mixed ±3e38 values under random weights (causal, ragged, GQA) match float64",
  async (backend) => {
    const c: Shape = {
      B: 2,
      Hq: 4,
      Hkv: 2,
      Sq: 3,
      N: 200,
      D: 32,
      causal: true,
      kvLens: [200, 77],
    };
    const data = {
      q: normals(c.B * c.Hq * c.Sq * c.D, 21),
      k: normals(c.B * c.Hkv * c.N * c.D, 22),
      v: mixed(c.B * c.Hkv * c.N * c.D, 3e38, 23),
    };
    await check(backend, c, data, "float32", "mixed ±3e38");
    await check(backend, { ...c, causal: false }, data, "float32", "mixed ±3e38, sinks", {
      sinks: [0.5, -1, 3, 0],
    });
  },
);

Deno.test({
  name: "every WebGPU kernel path (subgroup: fused merge, butterfly, staged tiles; " +
    "workgroup memory; generic) keeps mixed ±3e38 finite",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await webgpuBackend();
    if (!gpu) return;
    const c: Shape = { B: 1, Hq: 4, Hkv: 1, Sq: 2, N: 150, D: 32, causal: true, kvLens: [150] };
    const data = {
      q: normals(c.Hq * c.Sq * c.D, 51),
      k: normals(c.N * c.D, 52),
      v: mixed(c.N * c.D, 3e38, 53),
    };
    const tunings: AttentionTuning[] = [
      { kernel: "sg", fusedMerge: true },
      { kernel: "sg", fusedMerge: false, bf: false },
      { kernel: "sg", ws: true },
      { kernel: "wgm" },
      { kernel: "generic" },
    ];
    const saved = gpu.attentionTuning;
    try {
      for (const t of tunings) {
        gpu.attentionTuning = t;
        await check(gpu, c, data, "float32", `tuning ${JSON.stringify(t)}`, {
          sinks: [1, 0, -2, 4],
        });
      }
    } finally {
      gpu.attentionTuning = saved;
    }
  },
});

describeBackends(
  "a long sequence of near-uniform weights (Σ w in the thousands) with values near 3.4e38",
  async (backend) => {
    const N = backend.name === "cpu" ? 8192 : 2048;
    const c: Shape = { B: 1, Hq: 2, Hkv: 1, Sq: 1, N, D: 32 };
    const q = normals(c.Hq * c.D, 31).map((x) => x * 0.01);
    const u = uniformGenerator(32);
    // Same-sign values near the top: their sum is far past float32's max.
    const v = Float32Array.from({ length: N * c.D }, () => 3.4e38 * (0.9 + 0.1 * u()));
    await check(backend, c, { q, k: normals(N * c.D, 33), v }, "float32", `long N ${N}`);
  },
);

describeBackends(
  "float16 q/K/V at the largest float16 value: finite float16 outputs",
  async (backend) => {
    const c: Shape = { B: 1, Hq: 2, Hkv: 1, Sq: 2, N: 512, D: 32 };
    const q = normals(c.Hq * c.Sq * c.D, 41).map((x) => x * 0.1);
    const k = normals(c.N * c.D, 42);
    const u = uniformGenerator(43);
    const v = Float32Array.from({ length: c.N * c.D }, () => (u() < 0.5 ? -65504 : 65504));
    await check(backend, c, { q, k, v }, "float16", "float16 ±65504");
    await check(backend, c, { q, k, v: v.map(Math.abs) }, "float16", "float16 65504");
  },
);

describeBackends(
  "merging states whose outputs are near float32's max stays finite",
  async (backend) => {
    // Four states of out 3e38 and equal lse: out 3e38, lse log 4 (Σ of unit weights past max).
    const shape = [1, 2, 1, 8];
    const states = [0, 1, 2, 3].map(() => ({
      out: tensor(new Float32Array(16).fill(3e38), { shape, backend }),
      lse: tensor(new Float32Array(2), { shape: [1, 2, 1], backend }),
    }));
    const m = mergeAttentionStates(states);
    try {
      const out = await m.out.data();
      const lse = await m.lse.data();
      for (const x of out) assert(Math.abs(x - 3e38) <= 3e38 * 1e-6, `merged out ${x}`);
      for (const x of lse) assert(Math.abs(x - Math.log(4)) <= 1e-6, `merged lse ${x}`);
    } finally {
      for (const s of [...states, m]) {
        s.out.dispose();
        s.lse.dispose();
      }
    }
  },
);
