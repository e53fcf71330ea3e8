/**
 * The WebGPU backend against the CPU backend on identical seeded inputs, op by op, for both
 * float16 layouts (halves with `shader-f16`, rounded float32 without), plus what is specific
 * to the GPU: the pipeline cache, limits and error scopes, device loss, profiling, large
 * dispatch grids. Skipped (with a message) where no adapter exists, an error under CI=true.
 */
import fc from "fast-check";
import { deepStrictEqual as assertEquals, ok as assert, rejects, throws } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { parallelismOf, webgpu, type WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import { add, div, maximum, mul, sub } from "../ops/binary.ts";
import { cast } from "../ops/cast.ts";
import { matmul } from "../ops/matmul.ts";
import { max, sum } from "../ops/reduce.ts";
import { softmax } from "../ops/softmax.ts";
import { transpose } from "../ops/transpose.ts";
import { exp, log, neg } from "../ops/unary.ts";
import { where } from "../ops/where.ts";
import { randn, tensor } from "../tensor/creation.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { type DType, epsilon } from "../tensor/dtype.ts";
import { DeviceLostError, LeanattnError, LimitError } from "../tensor/errors.ts";
import { normals } from "../tensor/random.ts";
import { sizeOf } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { backends } from "./_backends.ts";
import { referenceAttention, type RefInput } from "../testing/reference.ts";
import { webgpuAttention } from "../backends/webgpu/internal.ts";
import type { GpuContext } from "../backends/webgpu/context.ts";
import { leanSchedule, splitSchedule } from "../schedule/lean_schedule.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const EPS32 = epsilon("float32");

async function mainGpu(): Promise<WebGpuBackend | null> {
  const b = (await backends()).find((x) => x.name === "webgpu");
  if (!b) console.warn("  (no webgpu backend: skipped)");
  return (b as WebGpuBackend | undefined) ?? null;
}

/**
 * Runs `fn` on a device of its own (destroyed afterwards), when the suite has a WebGPU backend:
 * for tests that change device-wide state (profiling, held submissions).
 */
async function withOwnGpu(fn: (b: WebGpuBackend) => Promise<void>): Promise<void> {
  if (!(await mainGpu())) return;
  const b = await webgpu();
  try {
    await fn(b);
  } finally {
    b.destroy();
  }
}

let f32Storage: Promise<WebGpuBackend> | null = null;
/** A second device without `shader-f16`: float16 stored as rounded float32. */
function noF16(): Promise<WebGpuBackend> {
  return f32Storage ??= webgpu({ disableFeatures: ["shader-f16"] });
}

/** Both GPU layouts of float16 (the native one only where the adapter has shader-f16). */
async function gpus(): Promise<WebGpuBackend[]> {
  const g = await mainGpu();
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
        inputs: [x],
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
  name:
    "pending ops share one compute pass; a timed op or a mark gets its own; chained results are exact",
  ...opts,
  fn: async () => {
    if (!(await mainGpu())) return;
    const b = await webgpu();
    const proto = GPUCommandEncoder.prototype;
    const begin = proto.beginComputePass;
    let passes = 0;
    proto.beginComputePass = function (this: GPUCommandEncoder, d?: GPUComputePassDescriptor) {
      passes++;
      return begin.call(this, d);
    };
    try {
      // 40 dependent ops (x ← x + x): one pass, and each sees the previous one's result
      // (exact in float32: the values are doubled 40 times, well inside the range).
      const x0 = normals(1000, 7).map((v) => v * 1e-6);
      let x = tensor(x0, { shape: [1000], backend: b });
      b.flush();
      passes = 0;
      for (let i = 0; i < 40; i++) {
        const y = add(x, x);
        x.dispose();
        x = y;
      }
      const got = await x.data();
      assertEquals(passes, 1, `40 dependent ops in ${passes} passes`);
      assert(got.every((v, i) => v === Math.fround(Math.fround(x0[i]) * 2 ** 40)), "chain");
      if (b.features.timestamps) {
        // A timed op: its own pass (timestamps sit at pass boundaries), the others still share.
        passes = 0;
        const a = add(x, x);
        b.setProfiling(true);
        const t = add(a, a);
        b.setProfiling(false);
        const c = add(t, t);
        await c.data();
        assertEquals(passes, 3, `untimed, timed, untimed: ${passes} passes`);
        assertEquals((await b.readTimings()).length, 1);
        // Marks (profiling off): each ends the shared pass and adds one empty timed pass; they
        // come back in order, their end stamps after the work before them.
        passes = 0;
        const m1 = add(c, c);
        assert(b.mark("m1"));
        const m2 = add(m1, m1);
        const m3 = add(m2, m2);
        assert(b.mark("m2"));
        assert((await m3.data()).every((v, i) => v === Math.fround(Math.fround(x0[i]) * 2 ** 46)));
        assertEquals(passes, 4, `ops, mark, ops, mark: ${passes} passes`);
        const marks = await b.readTimings();
        assertEquals(marks.map((m) => m.label), ["m1", "m2"]);
        assert(marks[1].endNs! >= marks[0].endNs!, "marks in order");
        for (const z of [a, t, c, m1, m2, m3]) z.dispose();
      }
      x.dispose();
    } finally {
      proto.beginComputePass = begin;
      b.destroy();
    }
  },
});

Deno.test({
  name: "pipelines are cached by kernel variant, not by shape",
  ...opts,
  fn: async () => {
    if (!(await mainGpu())) return;
    const b = await webgpu();
    try {
      const run = (shape: number[], seed: number) => {
        const x = tensor(normals(sizeOf(shape), seed), { shape, backend: b });
        const r = [softmax(x, -1), sum(x, 0), add(x, x), matmul(x, x, { transposeB: true })];
        return [x, ...r];
      };
      // Same kernel variants (the skinny matmul is specialised on M, so M stays 3).
      const first = run([3, 4], 1);
      await first[1].data();
      const n = b.pipelineCount;
      assert(n >= 4, `expected ≥ 4 pipelines, got ${n}`);
      const second = run([3, 9], 2);
      const third = run([3, 130], 3);
      await third[1].data();
      assertEquals(b.pipelineCount, n);
      for (const t of [...first, ...second, ...third]) t.dispose();
    } finally {
      b.destroy();
    }
  },
});

Deno.test({
  name: "limits: oversize allocations and bindings throw LimitError naming the limit",
  ...opts,
  fn: async () => {
    if (!(await mainGpu())) return;
    const b = await webgpu({ defaultLimits: true });
    try {
      const maxBuf = b.limits.maxBufferSize;
      const maxBind = b.limits.maxStorageBufferBindingSize;
      throws(
        () => b.ctx.alloc(maxBuf / 4 + 1, "float32"),
        (e) => e instanceof LimitError && /maxBufferSize/.test(e.message),
      );
      throws(() => b.ctx.scratch(maxBuf + 16), LimitError);
      if (maxBind + 16 <= maxBuf) {
        // Fits a buffer but not a binding: the kernel refuses instead of reading garbage.
        const id = b.ctx.alloc(maxBind / 4 + 4, "float32");
        throws(
          () => b.unary("neg", { id, shape: [maxBind / 4 + 4], dtype: "float32" }),
          (e) => e instanceof LimitError && /maxStorageBufferBindingSize/.test(e.message),
        );
        b.release(id);
      }
      // The backend still works afterwards.
      const t = tensor([1, 2, 3], { backend: b });
      assertEquals(await neg(t).data(), Float32Array.of(-1, -2, -3));
    } finally {
      b.destroy();
    }
    await rejects(
      webgpu({ requiredLimits: { maxBufferSize: Number.MAX_SAFE_INTEGER } }),
      (e) => e instanceof LimitError && /maxBufferSize/.test((e as Error).message),
    );
  },
});

Deno.test({
  name: "error scopes: a failing pipeline surfaces as a LeanattnError, never uncaptured",
  ...opts,
  fn: async () => {
    if (!(await mainGpu())) return;
    const b = await webgpu();
    let uncaptured = 0;
    b.device.addEventListener("uncapturederror", () => uncaptured++);
    try {
      const bad = b.ctx.pipeline("broken", () => "@compute @workgroup_size(1) fn main( {");
      const t = tensor([1, 2], { backend: b });
      await rejects(t.data(), (e) => e instanceof LeanattnError && /broken/.test(String(e)));
      // Once known, using the bad pipeline fails at once with the same error.
      throws(
        () => b.ctx.dispatch(bad, [], [1]),
        (e) => e instanceof LeanattnError && /broken/.test(String(e)),
      );
      // A validation error inside a dispatch (binding count mismatch) is captured too.
      const ok = b.ctx.pipeline(
        "ok",
        () =>
          "@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n" +
          "@compute @workgroup_size(1) fn main() { y[0] = 1.0; }",
      );
      b.ctx.dispatch(ok, [], [1], "missing-binding");
      await rejects(
        t.data(),
        (e) => e instanceof LeanattnError && /missing-binding/.test(String(e)),
      );
      // And the backend recovers.
      assertEquals(await t.data(), Float32Array.of(1, 2));
      assertEquals(uncaptured, 0);
    } finally {
      b.destroy();
    }
  },
});

Deno.test({
  name: "a destroyed device makes ops and reads throw DeviceLostError",
  ...opts,
  fn: async () => {
    if (!(await mainGpu())) return;
    const b = await webgpu();
    const t = tensor([1, 2, 3], { backend: b });
    const r = exp(t);
    b.destroy();
    assert(b.lost);
    throws(() => neg(t), DeviceLostError);
    await rejects(r.data(), DeviceLostError);
    throws(() => tensor([1], { backend: b }), DeviceLostError);
    t.dispose(); // releasing after loss is harmless
  },
});

Deno.test({
  name: "holdSubmits: 200 profiled passes in one command buffer, all timed, results right",
  ...opts,
  fn: () =>
    withOwnGpu(async (b) => {
      const x = tensor(normals(256, 6), { shape: [256], backend: b });
      b.setProfiling(b.features.timestamps);
      b.holdSubmits(true);
      // A chain of 200 dispatches (more than one timing batch and one automatic submission).
      let y = x;
      for (let i = 0; i < 200; i++) {
        const next = neg(y);
        if (y !== x) y.dispose();
        y = next;
      }
      b.holdSubmits(false);
      const got = await y.data();
      const want = await x.data();
      assertEquals(Array.from(got), Array.from(want)); // an even number of negations
      if (b.features.timestamps) {
        const t = await b.readTimings();
        assertEquals(t.length, 200);
        for (let i = 1; i < t.length; i++) {
          assert(t[i].endNs! >= t[i - 1].endNs!, `pass ${i} ends before pass ${i - 1}`);
        }
      }
      b.setProfiling(false);
      y.dispose();
    }),
});

Deno.test({
  name: "holdSubmits: a chain of 150 attention calls equals the same chain submitted as usual",
  ...opts,
  fn: () =>
    withOwnGpu(async (b) => {
      const q = randn([2, 8, 1, 64], { seed: 1, backend: b });
      const k = randn([2, 2, 300, 64], { seed: 2, backend: b });
      const v = randn([2, 2, 300, 64], { seed: 3, backend: b });
      // Each call uploads its schedule and takes scratch; held in one command buffer, the
      // chain must give the same bits as submitted in batches.
      const chain = async (hold: boolean) => {
        b.holdSubmits(hold);
        let cur: Tensor = q;
        for (let i = 0; i < 150; i++) {
          const next = i % 3 === 0
            ? leanAttention(cur, k, v, { grid: 7, tileSize: 16 })
            : i % 3 === 1
            ? flashAttention(cur, k, v, { numSplits: 3 })
            : flashAttention(cur, k, v);
          if (cur !== q) cur.dispose();
          cur = next;
        }
        b.holdSubmits(false);
        const d = await cur.data();
        cur.dispose();
        return d;
      };
      const plain = await chain(false);
      const held = await chain(true);
      assert(plain.every(Number.isFinite));
      assertEquals(Array.from(held), Array.from(plain));
    }),
});

Deno.test({
  name: "profiling: timestamp queries give one timing per compute pass",
  ...opts,
  fn: () =>
    withOwnGpu(async (b) => {
      if (!b.features.timestamps) {
        console.warn("  (no timestamp-query: skipped)");
        return;
      }
      const x = tensor(normals(64 * 64, 5), { shape: [64, 64], backend: b });
      b.setProfiling(true);
      const y = matmul(x, x);
      const z = softmax(y, -1);
      await z.data();
      const timings = await b.readTimings();
      assertEquals(timings.map((t) => t.label), ["matmul", "softmax"]);
      for (const t of timings) assert(t.ms >= 0 && t.ms < 10_000, `timing ${t.ms}`);
      b.setProfiling(false);
      neg(x);
      assertEquals(await b.readTimings(), []);
    }),
});

Deno.test({
  name: "more than 65,535 workgroups: the grid goes 2-D and covers every row",
  ...opts,
  fn: async () => {
    const b = await mainGpu();
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
  name: "a device lost outside the backend makes later ops throw DeviceLostError",
  ...opts,
  fn: async () => {
    if (!(await mainGpu())) return;
    const b = await webgpu();
    const t = tensor([1, 2, 3], { backend: b });
    b.device.destroy();
    await b.device.lost;
    await new Promise((r) => setTimeout(r, 0));
    assert(b.lost);
    throws(() => exp(t), DeviceLostError);
    await rejects(t.data(), DeviceLostError);
  },
});

Deno.test({
  name: "no adapter: BackendUnavailableError says why and how to get one",
  ...opts,
  fn: async () => {
    const url = new URL("../backends/webgpu/webgpu_backend.ts", import.meta.url).href;
    const code = `const { webgpu } = await import(${JSON.stringify(url)});
      try { await webgpu(); console.log("created"); }
      catch (e) { console.log(e.name + ": " + e.message); }`;
    const { stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-check", code],
      // An unknown backend name makes requestAdapter() return null.
      env: { DENO_WEBGPU_BACKEND: "no-such-backend", RUST_BACKTRACE: "0", NO_COLOR: "1" },
      stderr: "null",
    }).output();
    const out = new TextDecoder().decode(stdout);
    assert(/^BackendUnavailableError: /.test(out), out);
    assert(/requestAdapter\(\) returned null/.test(out), out);
    assert(/no-such-backend/.test(out) && /mesa-vulkan-drivers/.test(out), out);
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

Deno.test("parallelism: multiprocessors of known GPUs, 8 for software adapters, else 32", () => {
  const cases: [string, number, boolean][] = [
    ["NVIDIA H100 80GB HBM3", 132, true],
    ["NVIDIA H100 PCIe", 114, true],
    ["NVIDIA H200", 132, true],
    ["NVIDIA A100-SXM4-80GB", 108, true],
    ["NVIDIA L4", 58, true],
    ["NVIDIA L40S", 32, false],
    ["NVIDIA GeForce RTX 4090", 128, true],
    ["llvmpipe (LLVM 15.0.6, 256 bits)", 8, false],
    ["Apple M3", 32, false],
  ];
  for (const [name, parallelism, known] of cases) {
    assertEquals(parallelismOf(name), { parallelism, known }, name);
  }
});

Deno.test({
  name:
    "in-kernel merge of cut units: the same bits as the reduce pass (and with prefetch), and the reference",
  ...opts,
  fn: async () => {
    const b = await mainGpu();
    if (!b) return;
    // Lean (pieces of 2–3 workers a unit), flash-decoding with 19 splits (more pieces than
    // the merge loads at once), empty rows beside cut ones, causal prefill in query blocks
    // (row passes), GQA and MHA, a NaN key: each through the subgroup kernel with the cut
    // units merged by their last piece's workgroup (`fusedMerge`) and by the reduce pass.
    type Case = Pick<RefInput, "B" | "Hq" | "Hkv" | "Sq" | "N" | "D"> & {
      kvLens: number[];
      grid: number;
      splits?: number;
      nanAt?: number;
    };
    const cases: Case[] = [
      { B: 2, Hq: 8, Hkv: 2, Sq: 1, N: 700, D: 128, kvLens: [700, 0], grid: 7 },
      { B: 1, Hq: 4, Hkv: 4, Sq: 1, N: 1000, D: 64, kvLens: [999], grid: 9 },
      { B: 2, Hq: 8, Hkv: 2, Sq: 1, N: 650, D: 64, kvLens: [650, 333], grid: 0, splits: 19 },
      { B: 2, Hq: 4, Hkv: 1, Sq: 6, N: 200, D: 64, kvLens: [5, 150], grid: 5 },
      {
        B: 1,
        Hq: 8,
        Hkv: 2,
        Sq: 1,
        N: 500,
        D: 64,
        kvLens: [500],
        grid: 6,
        nanAt: 0.3,
      },
    ];
    // The pipelines each call asks for (the subgroup kernel's key says whether it merges).
    const keys: string[] = [];
    const ctx = new Proxy(b.ctx, {
      get(t, p) {
        const f = Reflect.get(t, p, t);
        if (p === "pipeline") {
          return (key: string, wgsl: () => string, entry?: string) => {
            keys.push(key);
            return t.pipeline(key, wgsl, entry);
          };
        }
        return typeof f === "function" ? f.bind(t) : f;
      },
    }) as GpuContext;
    let sgCases = 0;
    for (const [ci, c] of cases.entries()) {
      const causal = c.Sq > 1;
      const qBlocks = c.Sq > 1 ? 2 : 1;
      const qd = normals(c.B * c.Hq * c.Sq * c.D, 100 + ci);
      const kd = normals(c.B * c.Hkv * c.N * c.D, 200 + ci);
      const vd = normals(c.B * c.Hkv * c.N * c.D, 300 + ci);
      if (c.nanAt !== undefined) kd[Math.floor(c.nanAt * kd.length)] = NaN;
      const up = (d: Float32Array, shape: number[]) => ({
        id: b.upload(d, "float32", shape),
        shape,
        dtype: "float32" as const,
      });
      const q = up(qd, [c.B, c.Hq, c.Sq, c.D]);
      const k = up(kd, [c.B, c.Hkv, c.N, c.D]);
      const v = up(vd, [c.B, c.Hkv, c.N, c.D]);
      const plan = { batch: c.B, kvHeads: c.Hkv, kvLens: c.kvLens, qBlocks, tileSize: 16 };
      const schedule = c.splits
        ? splitSchedule({ ...plan, numSplits: c.splits })
        : leanSchedule({ ...plan, grid: c.grid });
      assert(schedule.cuts.length > 0, `case ${ci}: no unit is cut`);
      const params = {
        algo: c.splits ? "flash-decoding" as const : "lean" as const,
        scale: 1 / Math.sqrt(c.D),
        causal,
        kvLens: Int32Array.from(c.kvLens),
        schedule,
      };
      const rows = c.B * c.Hq * c.Sq;
      type Run = { out: Float32Array; lse: Float32Array; keys: string[] };
      const run = async (fusedMerge: boolean, pf?: boolean): Promise<Run> => {
        keys.length = 0;
        const r = webgpuAttention(ctx, q, k, v, params, { kernel: "sg", fusedMerge, pf });
        const out = await b.read(r.out, "float32", rows * c.D);
        const lse = await b.read(r.lse, "float32", rows);
        b.release(r.out);
        b.release(r.lse);
        return { out, lse, keys: [...keys] };
      };
      const fused = await run(true);
      const twoPass = await run(false);
      // Prefetching the next batch (the default for long GQA runs) changes when keys load,
      // not the arithmetic: the same bits.
      const prefetched = await run(true, true);
      // Where the subgroup kernel applies (not for every shape on every device: lanes a key
      // follow the subgroup size), cut units merge in it; else the reduce pass merges them.
      const empty = c.kvLens.includes(0);
      if (fused.keys[0].startsWith("attn-sg")) {
        sgCases++;
        assert(fused.keys[0].includes(":fmtrue"), `case ${ci}: ${fused.keys}`);
        assertEquals(fused.keys.length, empty ? 2 : 1, `case ${ci}: ${fused.keys}`);
        assert(twoPass.keys[0].includes(":fmfalse"), `case ${ci}: ${twoPass.keys}`);
      } else assertEquals(fused.keys, twoPass.keys);
      assertEquals(twoPass.keys.length, 2, `case ${ci}: ${twoPass.keys}`);
      const same = (x: Float32Array, y: Float32Array) =>
        x.every((a, i) => Object.is(a, y[i]) || (Number.isNaN(a) && Number.isNaN(y[i])));
      assert(same(fused.out, twoPass.out), `case ${ci}: outputs differ from the reduce pass`);
      assert(same(fused.lse, twoPass.lse), `case ${ci}: lse differ from the reduce pass`);
      assert(same(fused.out, prefetched.out), `case ${ci}: prefetching changed the outputs`);
      assert(same(fused.lse, prefetched.lse), `case ${ci}: prefetching changed the lse`);
      const ref = referenceAttention({ q: qd, k: kd, v: vd, ...c, causal });
      const tol = 8 * EPS32 * Math.max(1, Math.log2(c.N)) * 4;
      for (let i = 0; i < rows * c.D; i++) {
        const [a, e] = [fused.out[i], ref.out[i]];
        if (Number.isNaN(e)) assert(Number.isNaN(a), `case ${ci}: out[${i}] ${a}, want NaN`);
        else assert(Math.abs(a - e) <= tol, `case ${ci}: out[${i}] ${a}, want ${e} ± ${tol}`);
      }
      for (let i = 0; i < rows; i++) {
        const [a, e] = [fused.lse[i], ref.lse[i]];
        if (Number.isNaN(e) || e === -Infinity) {
          assert(
            Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e)),
            `case ${ci}: lse[${i}] ${a}, want ${e}`,
          );
        } else {assert(
            Math.abs(a - e) <= tol * Math.max(1, Math.abs(e)),
            `case ${ci}: lse[${i}] ${a}, want ${e}`,
          );}
      }
      for (const t of [q, k, v]) b.release(t.id);
    }
    if (b.features.subgroups) assert(sgCases >= 4, `${sgCases} cases ran the subgroup kernel`);
  },
});
