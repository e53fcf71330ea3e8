/**
 * Every composable op against float64 loops written independently here, on random shapes
 * (broadcasting, empty dimensions, negative axes) and seeded random values, on every backend.
 * Tolerances are per element, derived from the dtype and the length of each reduction.
 */
import fc from "npm:fast-check@4.10.2";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { add, div, maximum, mul, sub } from "../ops/binary.ts";
import { cast } from "../ops/cast.ts";
import { matmul } from "../ops/matmul.ts";
import { max, sum } from "../ops/reduce.ts";
import { softmax } from "../ops/softmax.ts";
import { transpose } from "../ops/transpose.ts";
import { exp, log, neg } from "../ops/unary.ts";
import { tensor } from "../tensor/creation.ts";
import { type DType, epsilon } from "../tensor/dtype.ts";
import { normals } from "../tensor/random.ts";
import { sizeOf, stridesOf } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { describeBackends, numRuns } from "./_backends.ts";

const EPS32 = epsilon("float32");

/** Values as stored in `dtype` (so the float64 reference sees what the backend sees). */
function rounded(values: Float32Array, dtype: DType): Float32Array {
  if (dtype === "float16") {
    for (let i = 0; i < values.length; i++) values[i] = Math.f16round(values[i]);
  }
  return values;
}

function make(
  backend: Backend,
  shape: number[],
  seed: number,
  dtype: DType,
  f: (x: number) => number = (x) => x,
): { t: Tensor; v: Float32Array } {
  const v = rounded(normals(sizeOf(shape), seed).map(f), dtype);
  return { t: tensor(v, { shape, dtype, backend }), v };
}

/**
 * Asserts |got − want| ≤ tol(i) elementwise; equal infinities and NaN-for-NaN pass. For
 * float16 results an exact value beyond the float16 range must come out as ±∞.
 */
function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: (i: number) => number,
  what: string,
  dtype: DType = "float32",
): void {
  assertEquals(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const h = Math.f16round(want[i]);
    const w = dtype === "float16" && Math.abs(h) === Infinity ? h : want[i];
    if (Number.isNaN(w)) {
      assert(Number.isNaN(g), `${what}[${i}]: expected NaN, got ${g}`);
      continue;
    }
    if (g === w) continue;
    const t = tol(i);
    assert(
      Math.abs(g - w) <= t,
      `${what}[${i}]: got ${g}, want ${w} (|diff| ${Math.abs(g - w)} > tol ${t})`,
    );
  }
}

/** Index into a tensor of `shape` at output coordinates `coord` under NumPy broadcasting. */
function bcastIndex(shape: readonly number[], coord: readonly number[]): number {
  const s = stridesOf(shape);
  let idx = 0;
  for (let i = 0; i < shape.length; i++) {
    const c = coord[coord.length - shape.length + i];
    idx += (shape[i] === 1 ? 0 : c) * s[i];
  }
  return idx;
}

/** The broadcast of two shapes, written independently of tensor/shape.ts. */
function bshape(sa: readonly number[], sb: readonly number[]): number[] {
  const n = Math.max(sa.length, sb.length);
  return Array.from({ length: n }, (_, i) => {
    const da = sa[i - (n - sa.length)] ?? 1;
    const db = sb[i - (n - sb.length)] ?? 1;
    return da === 1 ? db : da;
  });
}

function unravel(i: number, shape: readonly number[]): number[] {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return c;
}

const dtypeArb = fc.constantFrom<DType>("float32", "float16");
const seedArb = fc.integer({ min: 0, max: 2 ** 31 - 1 });
const shapeArb = (minRank: number, maxRank: number, minDim = 0, maxDim = 5) =>
  fc.array(fc.integer({ min: minDim, max: maxDim }), { minLength: minRank, maxLength: maxRank });

/** An output shape and two operand shapes that broadcast to it (leading dims dropped, 1s). */
const broadcastArb = shapeArb(0, 4, 0, 4).chain((out) => {
  const operand = fc.tuple(
    fc.integer({ min: 0, max: out.length }),
    fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
  ).map(([drop, ones]) => out.map((d, i) => (ones[i] ? 1 : d)).slice(drop));
  return fc.tuple(fc.constant(out), operand, operand);
});

const binaries = [
  { name: "add", op: add, f: (a: number, b: number) => a + b },
  { name: "sub", op: sub, f: (a: number, b: number) => a - b },
  { name: "mul", op: mul, f: (a: number, b: number) => a * b },
  { name: "div", op: div, f: (a: number, b: number) => a / b },
  {
    name: "maximum",
    op: maximum,
    f: (a: number, b: number) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)),
  },
];

describeBackends("binary ops broadcast like NumPy and round once", async (backend) => {
  for (const { name, op, f } of binaries) {
    await fc.assert(
      fc.asyncProperty(broadcastArb, seedArb, dtypeArb, async ([, sa, sb], seed, dtype) => {
        const outShape = bshape(sa, sb);
        const a = make(backend, sa, seed, dtype);
        const b = make(backend, sb, seed + 1, dtype);
        const r = op(a.t, b.t);
        assertEquals([...r.shape], outShape, `${name} shape`);
        assertEquals(r.dtype, dtype);
        const got = await r.data();
        const want = new Float64Array(sizeOf(outShape));
        for (let i = 0; i < want.length; i++) {
          const c = unravel(i, outShape);
          want[i] = f(a.v[bcastIndex(sa, c)], b.v[bcastIndex(sb, c)]);
        }
        // One rounding to the dtype (WGSL division is allowed 2.5 ulp, hence 4 eps).
        const e = 4 * epsilon(dtype);
        assertClose(got, want, (i) => e * Math.abs(want[i]) + 1e-7, `${name} ${dtype}`, dtype);
        for (const t of [a.t, b.t, r]) t.dispose();
      }),
      { numRuns: numRuns(backend, 40) },
    );
  }
});

describeBackends("binary ops take a JS number as the second operand", async (backend) => {
  const x = tensor([1.5, -2, 4], { backend });
  assertEquals(await add(x, 2).toArray(), [3.5, 0, 6]);
  assertEquals(await sub(x, 2).toArray(), [-0.5, -4, 2]);
  assertEquals(await mul(x, -2).toArray(), [-3, 4, -8]);
  assertEquals(await div(x, 2).toArray(), [0.75, -1, 2]);
  assertEquals(await maximum(x, 0).toArray(), [1.5, 0, 4]);
  const h = tensor([1, 2], { backend, dtype: "float16" });
  const r = mul(h, 0.1);
  assertEquals(r.dtype, "float16");
  assertEquals(await r.toArray(), [
    Math.f16round(Math.f16round(0.1)),
    Math.f16round(2 * Math.f16round(0.1)),
  ]);
});

describeBackends("unary ops (exp, neg, log) vs float64", async (backend) => {
  const cases = [
    {
      name: "exp",
      op: exp,
      f: Math.exp,
      g: (x: number) => 3 * x,
      ulps: (x: number) => 2 + 2 * Math.abs(x),
      abs: 0,
    },
    { name: "neg", op: neg, f: (x: number) => -x, g: (x: number) => x, ulps: () => 0, abs: 0 },
    // WGSL's log is accurate to 2^-21 absolute near 1, 3 ulp elsewhere.
    {
      name: "log",
      op: log,
      f: Math.log,
      g: (x: number) => Math.abs(x) + 1e-3,
      ulps: () => 3,
      abs: 2 ** -21,
    },
  ];
  for (const { name, op, f, g, ulps, abs } of cases) {
    await fc.assert(
      fc.asyncProperty(shapeArb(0, 4), seedArb, dtypeArb, async (shape, seed, dtype) => {
        const x = make(backend, shape, seed, dtype, g);
        const r = op(x.t);
        assertEquals([...r.shape], shape);
        assertEquals(r.dtype, dtype);
        const got = await r.data();
        const want = Float64Array.from(x.v, f);
        const e = epsilon(dtype);
        assertClose(
          got,
          want,
          (i) =>
            (ulps(x.v[i]) * EPS32 * 2 + e) * Math.abs(want[i]) + abs +
            (dtype === "float16" ? 6e-8 : 0),
          `${name} ${dtype}`,
          dtype,
        );
        x.t.dispose();
        r.dispose();
      }),
      { numRuns: numRuns(backend, 30) },
    );
  }
  const special = tensor([0, -1, Infinity, -Infinity, NaN], { backend });
  assertEquals(await log(special).data(), Float32Array.of(-Infinity, NaN, Infinity, NaN, NaN));
  // exp is exact at these points on every backend (elsewhere WGSL allows a few ulp).
  const edges = tensor([0, Infinity, -Infinity, NaN], { backend });
  assertEquals(await exp(edges).data(), Float32Array.of(1, Infinity, 0, NaN));
});

/** Float64 reduction of `x` (shape) along `axis`, the [outer, n, inner] way. */
function refReduce(
  v: ArrayLike<number>,
  shape: number[],
  axis: number,
  f: (vals: number[]) => number,
): Float64Array {
  const outer = sizeOf(shape.slice(0, axis));
  const n = shape[axis];
  const inner = sizeOf(shape.slice(axis + 1));
  const out = new Float64Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const vals: number[] = [];
      for (let j = 0; j < n; j++) vals.push(v[(o * n + j) * inner + i]);
      out[o * inner + i] = f(vals);
    }
  }
  return out;
}

const reduceArb = shapeArb(0, 4).chain((shape) =>
  fc.tuple(
    fc.constant(shape),
    shape.length === 0
      ? fc.constant(undefined)
      : fc.option(fc.integer({ min: -shape.length, max: shape.length - 1 }), { nil: undefined }),
    fc.boolean(),
  )
);

describeBackends("sum and max along an axis or all axes vs float64", async (backend) => {
  const fsum = (x: number[]) => x.reduce((s, y) => s + y, 0);
  const fabs = (x: number[]) => x.reduce((s, y) => s + Math.abs(y), 0);
  const fmax = (x: number[]) =>
    x.some(Number.isNaN) ? NaN : x.reduce((m, y) => Math.max(m, y), -Infinity);
  await fc.assert(
    fc.asyncProperty(reduceArb, seedArb, dtypeArb, async ([shape, axis, keepDims], seed, dtype) => {
      const x = make(backend, shape, seed, dtype);
      const a = axis === undefined ? undefined : axis < 0 ? axis + shape.length : axis;
      const expectShape = a === undefined
        ? (keepDims ? shape.map(() => 1) : [])
        : keepDims
        ? shape.map((d, i) => (i === a ? 1 : d))
        : shape.filter((_, i) => i !== a);
      const flatShape = a === undefined ? [sizeOf(shape)] : shape;
      const ax = a ?? 0;
      const n = flatShape[ax];
      const e = epsilon(dtype);

      const s = sum(x.t, axis, keepDims);
      assertEquals([...s.shape], expectShape, "sum shape");
      assertEquals(s.dtype, dtype);
      const want = refReduce(x.v, flatShape, ax, fsum);
      const mag = refReduce(x.v, flatShape, ax, fabs);
      assertClose(
        await s.data(),
        want,
        (i) => (n + 2) * EPS32 * mag[i] + e * Math.abs(want[i]) + 1e-7,
        `sum ${dtype}`,
        dtype,
      );

      const m = max(x.t, axis, keepDims);
      assertEquals([...m.shape], expectShape, "max shape");
      // The max is one of the stored values: exact.
      assertClose(await m.data(), refReduce(x.v, flatShape, ax, fmax), () => 0, `max ${dtype}`);
      for (const t of [x.t, s, m]) t.dispose();
    }),
    { numRuns: numRuns(backend, 60) },
  );
});

describeBackends(
  "reductions: empty sum is 0, empty max is −∞, max propagates NaN",
  async (backend) => {
    const empty = tensor(new Float32Array(0), { shape: [2, 0, 3], backend });
    assertEquals(await sum(empty, 1).toArray(), [[0, 0, 0], [0, 0, 0]]);
    assertEquals(await max(empty, 1).toArray(), [[-Infinity, -Infinity, -Infinity], [
      -Infinity,
      -Infinity,
      -Infinity,
    ]]);
    assertEquals(await sum(empty).toArray(), 0);
    assertEquals(await max(empty).toArray(), -Infinity);
    const withNaN = tensor([[1, NaN, 3], [4, 5, -Infinity]], { backend });
    const m = await max(withNaN, 1).data();
    assert(Number.isNaN(m[0]), `max with a NaN gave ${m[0]}`);
    assertEquals(m[1], 5);
    assertEquals(await sum(tensor(7, { backend })).toArray(), 7);
  },
);

describeBackends("softmax along any axis vs float64", async (backend) => {
  await fc.assert(
    fc.asyncProperty(
      shapeArb(1, 4, 0, 6).chain((shape) =>
        fc.tuple(fc.constant(shape), fc.integer({ min: -shape.length, max: shape.length - 1 }))
      ),
      seedArb,
      dtypeArb,
      fc.double({ min: 0.1, max: 30, noNaN: true }),
      async ([shape, axis], seed, dtype, spread) => {
        const x = make(backend, shape, seed, dtype, (y) => spread * y);
        const a = axis < 0 ? axis + shape.length : axis;
        const n = shape[a];
        const r = softmax(x.t, axis);
        assertEquals([...r.shape], shape);
        assertEquals(r.dtype, dtype);
        const want = new Float64Array(x.v.length);
        const dist = new Float64Array(x.v.length); // |x − max|, which bounds exp's error
        const outer = sizeOf(shape.slice(0, a));
        const inner = sizeOf(shape.slice(a + 1));
        for (let o = 0; o < outer; o++) {
          for (let i = 0; i < inner; i++) {
            const at = (j: number) => (o * n + j) * inner + i;
            let m = -Infinity;
            for (let j = 0; j < n; j++) m = Math.max(m, x.v[at(j)]);
            let l = 0;
            for (let j = 0; j < n; j++) l += Math.exp(x.v[at(j)] - m);
            for (let j = 0; j < n; j++) {
              want[at(j)] = Math.exp(x.v[at(j)] - m) / l;
              dist[at(j)] = m - x.v[at(j)];
            }
          }
        }
        const e = epsilon(dtype);
        assertClose(
          await r.data(),
          want,
          (i) =>
            ((n + 8 + 2 * dist[i]) * EPS32 + e) * want[i] + (dtype === "float16" ? 6e-8 : 1e-30),
          `softmax ${dtype}`,
          dtype,
        );
        x.t.dispose();
        r.dispose();
      },
    ),
    { numRuns: numRuns(backend, 60) },
  );
});

describeBackends(
  "softmax: all −∞ row gives zeros, −∞ entries give 0, huge values stay finite",
  async (backend) => {
    const x = tensor([[-Infinity, -Infinity, -Infinity], [0, -Infinity, 0], [1e30, 1e30, -1e30]], {
      backend,
    });
    assertEquals(await softmax(x).toArray(), [[0, 0, 0], [0.5, 0, 0.5], [0.5, 0.5, 0]]);
    assertEquals(await softmax(x, 0).toArray(), [[0, 0, 0], [0, 0, 1], [1, 1, 0]]);
  },
);

describeBackends(
  "matmul: batched, broadcast leading dims, transposes vs float64",
  async (backend) => {
    const arb = fc.record({
      batch: broadcastArb,
      M: fc.integer({ min: 0, max: 6 }),
      K: fc.integer({ min: 0, max: 9 }),
      N: fc.integer({ min: 0, max: 6 }),
      tA: fc.boolean(),
      tB: fc.boolean(),
      seed: seedArb,
      dtype: dtypeArb,
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ batch: [, ba, bb], M, K, N, tA, tB, seed, dtype }) => {
        const aShape = [...ba, ...(tA ? [K, M] : [M, K])];
        const bShape = [...bb, ...(tB ? [N, K] : [K, N])];
        const a = make(backend, aShape, seed, dtype);
        const b = make(backend, bShape, seed + 7, dtype);
        const r = matmul(a.t, b.t, { transposeA: tA, transposeB: tB });
        const batch = bshape(ba, bb);
        const n = batch.length;
        const outShape = [...batch, M, N];
        assertEquals([...r.shape], outShape);
        assertEquals(r.dtype, dtype);
        const want = new Float64Array(sizeOf(outShape));
        const mag = new Float64Array(want.length);
        for (let o = 0; o < want.length; o++) {
          const c = unravel(o, outShape);
          const bc = c.slice(0, n);
          const [i, j] = c.slice(n);
          let s = 0;
          let m = 0;
          for (let k = 0; k < K; k++) {
            const av = a.v[bcastIndex(aShape, [...bc, ...(tA ? [k, i] : [i, k])])];
            const bv = b.v[bcastIndex(bShape, [...bc, ...(tB ? [j, k] : [k, j])])];
            s += av * bv;
            m += Math.abs(av * bv);
          }
          want[o] = s;
          mag[o] = m;
        }
        const e = epsilon(dtype);
        assertClose(
          await r.data(),
          want,
          (i) => (K + 2) * EPS32 * mag[i] + e * Math.abs(want[i]) + 1e-7,
          `matmul ${dtype} a${JSON.stringify(aShape)} b${JSON.stringify(bShape)} tA=${tA} tB=${tB}`,
          dtype,
        );
        for (const t of [a.t, b.t, r]) t.dispose();
      }),
      { numRuns: numRuns(backend, 60) },
    );
  },
);

describeBackends("transpose permutes axes exactly (default: reversed)", async (backend) => {
  const arb = shapeArb(0, 5, 0, 4).chain((shape) =>
    fc.tuple(
      fc.constant(shape),
      fc.option(fc.shuffledSubarray(shape.map((_, i) => i), { minLength: shape.length }), {
        nil: undefined,
      }),
    )
  );
  await fc.assert(
    fc.asyncProperty(arb, seedArb, dtypeArb, async ([shape, perm], seed, dtype) => {
      const x = make(backend, shape, seed, dtype);
      const r = transpose(x.t, perm);
      const p = perm ?? shape.map((_, i) => shape.length - 1 - i);
      const outShape = p.map((a) => shape[a]);
      assertEquals([...r.shape], outShape);
      assertEquals(r.dtype, dtype);
      const want = new Float64Array(sizeOf(outShape));
      const s = stridesOf(shape);
      for (let o = 0; o < want.length; o++) {
        const c = unravel(o, outShape);
        let idx = 0;
        for (let d = 0; d < p.length; d++) idx += c[d] * s[p[d]];
        want[o] = x.v[idx];
      }
      assertClose(await r.data(), want, () => 0, `transpose ${JSON.stringify(p)}`);
      x.t.dispose();
      r.dispose();
    }),
    { numRuns: numRuns(backend, 60) },
  );
  const neg = transpose(tensor([[1, 2, 3]], { backend }), [-1, -2]);
  assertEquals(await neg.toArray(), [[1], [2], [3]]);
});

describeBackends("cast rounds to float16 (nearest even) and widens exactly", async (backend) => {
  await fc.assert(
    fc.asyncProperty(shapeArb(0, 3), seedArb, async (shape, seed) => {
      const x = make(backend, shape, seed, "float32", (y) => y * 1000);
      const h = cast(x.t, "float16");
      assertEquals(h.dtype, "float16");
      assertEquals([...h.shape], shape);
      const hv = await h.data();
      assertClose(hv, Float64Array.from(x.v, Math.f16round), () => 0, "cast f32→f16");
      const back = cast(h, "float32");
      assertEquals(back.dtype, "float32");
      assertClose(await back.data(), hv, () => 0, "cast f16→f32");
      for (const t of [x.t, h, back]) t.dispose();
    }),
    { numRuns: numRuns(backend, 30) },
  );
  const big = cast(tensor([70000, -1e-9, 65504], { backend }), "float16");
  assertEquals(await big.data(), Float32Array.of(Infinity, -0, 65504));
});

describeBackends("ops free their temporaries (memory returns to where it was)", (backend) => {
  const x = tensor([[1, 2, 3], [4, 5, 6]], { backend });
  const before = backend.memory().liveCount;
  const results = [add(x, 1), sub(x, 1), mul(x, 2), div(x, 2), maximum(x, 3), sum(x), max(x)];
  assertEquals(backend.memory().liveCount, before + results.length);
  for (const r of results) r.dispose();
  assertEquals(backend.memory().liveCount, before);
  x.dispose();
});
