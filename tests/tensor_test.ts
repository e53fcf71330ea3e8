/**
 * Tensor basics on every backend (creation, seeded randn, toArray, moving between backends)
 * and ndarray round trips, including strided, offset, stepped and transposed views. Reshape
 * views and dispose: tests/lifetimes_test.ts; bad input: tests/bad_input_creation_test.ts.
 */
import fc from "npm:fast-check@4.10.2";
// @ts-types="npm:@types/ndarray@1.1.0"
import ndarray from "npm:ndarray@1.1.1";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { full, ones, randn, tensor, zeros } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { fromNdarray, toNdarray } from "../tensor/ndarray.ts";
import { normals } from "../tensor/random.ts";
import { sizeOf } from "../tensor/shape.ts";
import { backends, describeBackends, numRuns } from "./_backends.ts";

describeBackends("tensor(): nested, flat with shape, scalar; float16 rounds", async (backend) => {
  const t = tensor([[1, 2, 3], [4, 5, 6]], { backend });
  assertEquals([...t.shape], [2, 3]);
  assertEquals(t.dtype, "float32");
  assertEquals(t.size, 6);
  assertEquals(t.rank, 2);
  assertEquals(t.backend, backend);
  assertEquals(await t.toArray(), [[1, 2, 3], [4, 5, 6]]);
  const flat = tensor(Float32Array.of(1, 2, 3, 4, 5, 6), { shape: [3, 1, 2], backend });
  assertEquals(await flat.toArray(), [[[1, 2]], [[3, 4]], [[5, 6]]]);
  const s = tensor(2.5, { backend });
  assertEquals([...s.shape], []);
  assertEquals(await s.toArray(), 2.5);
  // 70000 is beyond float16's range: an error (tests/tensor_range_test.ts), not Infinity.
  const h = tensor([0.1, 1 / 3, 65519, -1e-9, -Infinity], { backend, dtype: "float16" });
  assertEquals(h.dtype, "float16");
  assertEquals(
    await h.data(),
    Float32Array.of(Math.f16round(0.1), Math.f16round(1 / 3), 65504, -0, -Infinity),
  );
  const empty = tensor([], { shape: [0, 4], backend });
  assertEquals(await empty.toArray(), []);
  assertEquals((await empty.data()).length, 0);
  assert(String(t).includes("[2, 3]") && String(t).includes(backend.name), String(t));
});

describeBackends("zeros, ones, full", async (backend) => {
  for (const dtype of ["float32", "float16"] as DType[]) {
    assertEquals(await zeros([2, 2], { backend, dtype }).toArray(), [[0, 0], [0, 0]]);
    assertEquals(await ones([3], { backend, dtype }).toArray(), [1, 1, 1]);
    assertEquals(await full([1, 2], -7.25, { backend, dtype }).toArray(), [[-7.25, -7.25]]);
    assertEquals(zeros([2], { backend, dtype }).dtype, dtype);
  }
});

describeBackends("randn is reproducible from its seed and looks normal", async (backend) => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 3 }),
      async (seed, shape) => {
        const a = await randn(shape, { seed, backend }).data();
        const b = await randn(shape, { seed, backend }).data();
        assertEquals(a, b);
        // The same values on every backend: drawn on the CPU, then uploaded.
        assertEquals(a, await randn(shape, { seed, backend: cpu() }).data());
        assertEquals(a, normals(sizeOf(shape), seed));
        const h = await randn(shape, { seed, backend, dtype: "float16" }).data();
        assertEquals(h, Float32Array.from(a, Math.f16round));
      },
    ),
    { numRuns: numRuns(backend, 20) },
  );
  const x = await randn([4096], { seed: 42, backend }).data();
  const y = await randn([4096], { seed: 43, backend }).data();
  assert(x.some((v, i) => v !== y[i]), "different seeds gave the same values");
  const mean = x.reduce((s, v) => s + v, 0) / x.length;
  const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
  assert(Math.abs(mean) < 0.1 && Math.abs(variance - 1) < 0.1, `mean ${mean}, var ${variance}`);
});

describeBackends("to(backend) copies values, shape and dtype", async (backend) => {
  for (const target of await backends()) {
    for (const dtype of ["float32", "float16"] as DType[]) {
      const t = randn([2, 5], { seed: 3, backend, dtype });
      const moved = await t.to(target);
      assertEquals(moved.backend, target);
      assertEquals([...moved.shape], [2, 5]);
      assertEquals(moved.dtype, dtype);
      assertEquals(await moved.data(), await t.data());
      t.dispose();
      assertEquals((await moved.data()).length, 10, "the copy outlives the original");
      moved.dispose();
    }
  }
});

/** A random ndarray view: random shape, then random transposes, slices, steps (±), picks. */
const viewArb = fc.record({
  shape: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }),
  perm: fc.array(fc.nat(), { maxLength: 4 }),
  lo: fc.array(fc.nat(), { minLength: 4, maxLength: 4 }),
  steps: fc.array(fc.integer({ min: -2, max: 2 }).filter((s) => s !== 0), {
    minLength: 4,
    maxLength: 4,
  }),
  pick: fc.option(fc.nat(), { nil: undefined }),
  pad: fc.integer({ min: 0, max: 5 }),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});

describeBackends("fromNdarray honours strides and offset of any view", async (backend) => {
  await fc.assert(
    fc.asyncProperty(viewArb, async ({ shape, perm, lo, steps, pick, pad, seed }) => {
      // Data with unused room in front so the offset is not 0.
      const data = normals(pad + sizeOf(shape), seed);
      const stride = shape.map((_, i) => sizeOf(shape.slice(i + 1)));
      let nd = ndarray(data, shape, stride, pad);
      // A shuffled axis order from `perm`.
      const order = shape.map((_, i) => i).sort((a, b) =>
        ((perm[a] ?? a) - (perm[b] ?? b)) || a - b
      );
      nd = nd.transpose(...order);
      nd = nd.lo(...nd.shape.map((d, i) => lo[i] % d));
      nd = nd.step(...nd.shape.map((_, i) => steps[i]));
      if (pick !== undefined && nd.dimension > 1) nd = nd.pick(pick % nd.shape[0]);
      const t = fromNdarray(nd, { backend });
      assertEquals([...t.shape], nd.shape);
      assertEquals(t.dtype, "float32");
      // Expected values through ndarray's own indexing, row-major over the view.
      const want: number[] = [];
      const idx = new Array<number>(nd.dimension).fill(0);
      for (let o = 0; o < nd.size; o++) {
        want.push(nd.get(...idx));
        for (let d = nd.dimension - 1; d >= 0; d--) {
          if (++idx[d] < nd.shape[d]) break;
          idx[d] = 0;
        }
      }
      assertEquals(await t.data(), Float32Array.from(want));
      // And back: a contiguous float32 ndarray with the same shape and values.
      const back = await toNdarray(t);
      assertEquals(back.shape, nd.shape);
      assert(back.data instanceof Float32Array, "toNdarray gives Float32Array data");
      assertEquals(back.offset, 0);
      assertEquals(back.stride, nd.shape.map((_, i) => sizeOf(nd.shape.slice(i + 1))));
      assertEquals(Array.from(back.data), want);
      t.dispose();
    }),
    { numRuns: numRuns(backend, 60) },
  );
});

describeBackends(
  "ndarray interop: transposed view, Float16Array, plain arrays, rank 0",
  async (backend) => {
    const nd = ndarray(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]);
    assertEquals(await fromNdarray(nd.transpose(1, 0), { backend }).toArray(), [[1, 4], [2, 5], [
      3,
      6,
    ]]);
    assertEquals(await fromNdarray(nd.hi(2, 2).lo(1, 0), { backend }).toArray(), [[4, 5]]);
    assertEquals(await fromNdarray(nd.step(-1, -1), { backend }).toArray(), [[6, 5, 4], [3, 2, 1]]);
    const h = fromNdarray(ndarray(Float16Array.of(0.5, 1.5), [2]), { backend });
    assertEquals(h.dtype, "float16");
    assertEquals(await h.toArray(), [0.5, 1.5]);
    const forced = fromNdarray(ndarray([0.1, 0.2], [2]), { backend, dtype: "float16" });
    assertEquals(forced.dtype, "float16");
    assertEquals(await forced.data(), Float32Array.of(Math.f16round(0.1), Math.f16round(0.2)));
    const scalar = fromNdarray(ndarray(Float32Array.of(9, 7), [], [], 1), { backend });
    assertEquals([...scalar.shape], []);
    assertEquals(await scalar.toArray(), 7);
    const back = await toNdarray(randn([2, 3, 4], { seed: 9, backend }));
    assertEquals(back.get(1, 2, 3), (await randn([24], { seed: 9, backend }).data())[23]);
    const s = await toNdarray(tensor(3, { backend }));
    assertEquals(s.shape, []);
    assertEquals(s.get(), 3);
  },
);
