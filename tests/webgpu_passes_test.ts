/**
 * How work reaches the GPU: pending ops share one compute pass (a timed op or a mark gets its
 * own), pipelines are cached by kernel variant, held submissions keep results and timings
 * exact, and profiling gives one timing per compute pass.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { add } from "../ops/binary.ts";
import { matmul } from "../ops/matmul.ts";
import { sum } from "../ops/reduce.ts";
import { softmax } from "../ops/softmax.ts";
import { neg } from "../ops/unary.ts";
import { randn, tensor } from "../tensor/creation.ts";
import { normals } from "../tensor/random.ts";
import { sizeOf } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { ownWebgpu, webgpuBackend, withOwnGpu } from "./_backends.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name:
    "pending ops share one compute pass; a timed op or a mark gets its own; chained results are exact",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const b = await ownWebgpu();
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
    if (!(await webgpuBackend())) return;
    const b = await ownWebgpu();
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
