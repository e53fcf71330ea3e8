/**
 * The WebGPU backend against the CPU backend on identical seeded inputs, op by op, for both
 * float16 layouts (halves with `shader-f16`, rounded float32 without): elementwise ops,
 * reductions, softmax, transpose, where, matmul (every kernel path), cast, float16 storage,
 * long rows and grids past 65,535 workgroups. Skipped (with a message) where no adapter exists,
 * an error under CI=true.
 */
import fc from "npm:fast-check@4.10.2";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import { add, div, maximum, mul, sub } from "../ops/binary.ts";
import { cast } from "../ops/cast.ts";
import { matmul } from "../ops/matmul.ts";
import { max, sum } from "../ops/reduce.ts";
import { softmax } from "../ops/softmax.ts";
import { transpose } from "../ops/transpose.ts";
import { exp, log, neg } from "../ops/unary.ts";
import { where } from "../ops/where.ts";
import { tensor } from "../tensor/creation.ts";
import { type DType, epsilon } from "../tensor/dtype.ts";
import { normals } from "../tensor/random.ts";
import { sizeOf } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { ownWebgpu, webgpuBackend } from "./_backends.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const EPS32 = epsilon("float32");

let f32Storage: Promise<WebGpuBackend> | null = null;
/** A second device without `shader-f16`: float16 stored as rounded float32. */
function noF16(): Promise<WebGpuBackend> {
  return f32Storage ??= ownWebgpu({ disableFeatures: ["shader-f16"] });
}

/** Both GPU layouts of float16 (the native one only where the adapter has shader-f16). */
async function gpus(): Promise<WebGpuBackend[]> {
  const g = await webgpuBackend();
  if (!g) return [];
  return g.nativeF16 ? [g, await noF16()] : [g];
}

/** One op case: the op built from inputs on a backend, and its error scale. */
interface Case {
  name: string;
  inputs: { shape: number[]; values: Float32Array }[];
  run: (xs: Tensor[]) => Tensor;
  /** Accumulation length (1 for elementwise). */
  length: number;
  /** Magnitude an accumulated rounding error is relative to (0: per element). */
  scale: number;
  /** Results must match bit for bit. */
  exact?: boolean;
}

/**
 * Runs `c` on the CPU and on `gpu` from the same values (rounded to `dtype` by the same
 * upload) and compares: f32 error bound (16 + 4·√length)·ε32·(|cpu| + scale) (rounding errors
 * of sums of random terms grow like √length; `scale` is the sum of the terms' magnitudes), plus one float16
 * ulp of the value when the output is float16 (both sides round once, maybe on either side of
 * a tie of their f32 results).
 */
async function agree(gpu: Backend, c: Case, dtype: DType): Promise<void> {
  const on = (b: Backend) =>
    c.inputs.map((i) => tensor(i.values, { shape: i.shape, dtype, backend: b }));
  const xc = on(cpu());
  const xg = on(gpu);
  const rc = c.run(xc);
  const rg = c.run(xg);
  assertEquals(rg.shape, rc.shape);
  assertEquals(rg.dtype, rc.dtype);
  const want = await rc.data();
  const got = await rg.data();
  const label = `${c.name} ${dtype} on ${gpu.description} (f16 storage: ${gpu.nativeF16})`;
  for (let i = 0; i < want.length; i++) {
    const w = want[i];
    const g = got[i];
    if (rc.dtype === "float16") {
      assert(Object.is(Math.f16round(g), g), `${label}: [${i}] ${g} is not a float16 value`);
    }
    if (c.exact || !Number.isFinite(w)) {
      assert(Object.is(g, w) || (g === w), `${label}: [${i}] ${g} !== ${w}`);
      continue;
    }
    let tol = (16 + 4 * Math.sqrt(c.length)) * EPS32 * (Math.abs(w) + c.scale);
    if (rc.dtype === "float16") tol += 2 ** -10 * Math.abs(w) + 2 ** -24;
    assert(Math.abs(g - w) <= tol, `${label}: [${i}] gpu ${g} vs cpu ${w} (tol ${tol})`);
  }
  for (const t of [...xc, ...xg, rc, rg]) t.dispose();
}

const meanAbs = (v: Float32Array) => v.reduce((m, x) => m + Math.abs(x), 0) / Math.max(1, v.length);

/** Seeded values for a shape (never all zeros). */
function input(shape: number[], seed: number, f: (x: number) => number = (x) => x) {
  return { shape, values: normals(sizeOf(shape), seed).map(f) };
}

const dims = fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 });

/** Cases drawn from a shape, a seed and a choice of axis. */
function cases(shape: number[], seed: number, pick: number): Case[] {
  const r = shape.length;
  const axis = pick % r;
  const x = input(shape, seed);
  const len = shape[axis];
  // b broadcasts: some dims set to 1, a leading dim dropped.
  const bShape = shape.map((d, i) => ((pick >> i) & 1 ? 1 : d)).slice(pick % 2);
  const y = input(bShape.length ? bShape : [1], seed + 1, (v) => v + Math.sign(v) * 0.5);
  const perm = shape.map((_, i) => i).sort((a, b) => ((a * 7 + pick) % r) - ((b * 7 + pick) % r));
  const out: Case[] = [
    { name: "exp", inputs: [x], run: ([a]) => exp(a), length: 1, scale: 0 },
    { name: "neg", inputs: [x], run: ([a]) => neg(a), length: 1, scale: 0, exact: true },
    {
      name: "log",
      inputs: [input(shape, seed, (v) => Math.abs(v) + 0.05)],
      run: ([a]) => log(a),
      length: 1,
      scale: 1,
    },
    { name: "add", inputs: [x, y], run: ([a, b]) => add(a, b), length: 1, scale: 0 },
    { name: "sub", inputs: [x, y], run: ([a, b]) => sub(a, b), length: 1, scale: 0 },
    { name: "mul", inputs: [x, y], run: ([a, b]) => mul(a, b), length: 1, scale: 0 },
    { name: "div", inputs: [x, y], run: ([a, b]) => div(a, b), length: 1, scale: 0 },
    { name: "maximum", inputs: [x, y], run: ([a, b]) => maximum(a, b), length: 1, scale: 0 },
    {
      name: `sum axis ${axis}`,
      inputs: [x],
      run: ([a]) => sum(a, axis),
      length: len,
      scale: meanAbs(x.values) * len,
    },
    {
      name: "where",
      // About half the conditions are exactly 0, a few NaN (which counts as true).
      inputs: [input(shape, seed + 2, (v) => (v > 0 ? v : v < -1.5 ? NaN : 0)), x, y],
      run: ([c, a, b]) => where(c, a, b),
      length: 1,
      scale: 0,
      exact: true,
    },
    { name: `max axis ${axis}`, inputs: [x], run: ([a]) => max(a, axis), length: 1, scale: 0 },
    {
      name: `softmax axis ${axis}`,
      inputs: [x],
      run: ([a]) => softmax(a, axis),
      length: len,
      scale: 1 / len,
    },
    {
      name: `transpose [${perm}]`,
      inputs: [x],
      run: ([a]) => transpose(a, perm),
      length: 1,
      scale: 0,
      exact: true,
    },
  ];
  return out;
}

const matmulCase = fc.record({
  batchA: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
  dropB: fc.boolean(),
  // M ≤ 8: skinny kernel; 9..16 or N ≤ 16: 16×16 tiles; both above 16: 64×64 tiles.
  M: fc.oneof(
    fc.integer({ min: 1, max: 8 }),
    fc.integer({ min: 9, max: 16 }),
    fc.integer({ min: 17, max: 70 }),
  ),
  // K ≥ 512 with few output tiles takes the split-K path (partials summed in order).
  K: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 512, max: 2000 })),
  N: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 17, max: 70 })),
  tA: fc.boolean(),
  tB: fc.boolean(),
  seed: fc.integer({ min: 0, max: 1 << 20 }),
});

for (const dtype of ["float32", "float16"] as const) {
  Deno.test({
    name: `elementwise, reductions, softmax, transpose agree with the CPU (${dtype})`,
    ...opts,
    fn: async () => {
      for (const gpu of await gpus()) {
        await fc.assert(
          fc.asyncProperty(
            dims,
            fc.integer({ min: 0, max: 1 << 20 }),
            fc.nat(63),
            async (s, seed, pick) => {
              for (const c of cases(s, seed, pick)) await agree(gpu, c, dtype);
            },
          ),
          { numRuns: 6 },
        );
      }
    },
  });

  Deno.test({
    name:
      `matmul (batched, broadcast, transposed, K not a tile multiple, split K) agrees with the CPU (${dtype})`,
    ...opts,
    fn: async () => {
      for (const gpu of await gpus()) {
        await fc.assert(
          fc.asyncProperty(matmulCase, async ({ batchA, dropB, M, K, N, tA, tB, seed }) => {
            const batchB = dropB ? batchA.slice(1) : batchA.map((d, i) => (i === 0 ? 1 : d));
            const a = input([...batchA, ...(tA ? [K, M] : [M, K])], seed);
            const b = input([...batchB, ...(tB ? [N, K] : [K, N])], seed + 1);
            await agree(gpu, {
              name: `matmul ${a.shape}×${b.shape} tA=${tA} tB=${tB}`,
              inputs: [a, b],
              run: ([x, y]) => matmul(x, y, { transposeA: tA, transposeB: tB }),
              length: K,
              scale: K * meanAbs(a.values) * meanAbs(b.values),
            }, dtype);
          }),
          { numRuns: 12 },
        );
      }
    },
  });
}

Deno.test({
  name: "cast agrees with the CPU in both directions and rounds to nearest even",
  ...opts,
  fn: async () => {
    for (const gpu of await gpus()) {
      // Values near float16 ties, overflow to ±∞, subnormals, and plain normals.
      const special = Float32Array.of(
        1 + 2 ** -11,
        1 + 3 * 2 ** -11,
        65504,
        65519,
        65520,
        -1e6,
        2 ** -20,
        -(2 ** -25),
        0,
      );
      const values = new Float32Array([...special, ...normals(50, 3)]);
      const x = { shape: [values.length], values };
      await agree(gpu, {
        name: "cast→f16",
        inputs: [x],
        run: ([a]) => cast(a, "float16"),
        length: 1,
        scale: 0,
        exact: true,
      }, "float32");
      await agree(gpu, {
        name: "cast→f32",
        // As float16 input, values beyond its range are given as the ∞ they round to
        // (tensor() refuses a finite value it cannot hold).
        inputs: [{ shape: x.shape, values: values.map(Math.f16round) }],
        run: ([a]) => cast(a, "float32"),
        length: 1,
        scale: 0,
        exact: true,
      }, "float16");
    }
  },
});

Deno.test({
  name: "float16 storage: odd element counts and values round trip exactly",
  ...opts,
  fn: async () => {
    for (const gpu of await gpus()) {
      for (const n of [1, 3, 7, 33]) {
        const v = normals(n, n).map(Math.f16round);
        const t = tensor(v, { dtype: "float16", backend: gpu });
        assertEquals(await t.data(), v);
        t.dispose();
      }
    }
  },
});

Deno.test({
  name: "more than 65,535 workgroups: the grid goes 2-D and covers every row",
  ...opts,
  fn: async () => {
    const b = await webgpuBackend();
    if (!b) return;
    const rows = 70_001;
    const v = normals(rows * 2, 9);
    const x = tensor(v, { shape: [rows, 2], backend: b });
    // Row reductions and softmax use one workgroup per row; matmul one per 16×16 tile.
    const s = await sum(x, 1).data();
    const sm = await softmax(x, 1).data();
    const xx = x.reshape([rows, 1, 2]);
    const mm = await matmul(xx, xx, { transposeB: true }).data();
    for (const i of [0, 1, 65_534, 65_535, 65_536, rows - 1]) {
      const [a, c] = [v[2 * i], v[2 * i + 1]];
      assert(
        Math.abs(s[i] - Math.fround(a + c)) <= 1e-6 * (Math.abs(a) + Math.abs(c)),
        `sum row ${i}`,
      );
      const e = Math.exp(a - Math.max(a, c)) /
        (Math.exp(a - Math.max(a, c)) + Math.exp(c - Math.max(a, c)));
      assert(Math.abs(sm[2 * i] - e) <= 1e-6, `softmax row ${i}: ${sm[2 * i]} vs ${e}`);
      assert(Math.abs(mm[i] - (a * a + c * c)) <= 1e-5 * (a * a + c * c), `matmul batch ${i}`);
    }
    x.dispose();
  },
});

Deno.test({
  name: "long rows (≥ 2048: 256 threads a row) reduce and softmax like the CPU",
  ...opts,
  fn: async () => {
    for (const gpu of await gpus()) {
      for (const dtype of ["float32", "float16"] as const) {
        for (const n of [2047, 2048, 5000]) {
          const x = input([3, n], n);
          const big = meanAbs(x.values) * n;
          await agree(gpu, {
            name: `sum n=${n}`,
            inputs: [x],
            run: ([a]) => sum(a, 1),
            length: n,
            scale: big,
          }, dtype);
          await agree(gpu, {
            name: `max n=${n}`,
            inputs: [x],
            run: ([a]) => max(a, 1),
            length: 1,
            scale: 0,
            exact: true,
          }, dtype);
          await agree(gpu, {
            name: `softmax n=${n}`,
            inputs: [x],
            run: ([a]) => softmax(a, 1),
            length: n,
            scale: 1 / n,
          }, dtype);
        }
      }
    }
  },
});
