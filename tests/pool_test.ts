/**
 * The WebGPU buffer pool: long loops of ops that dispose their results keep live memory flat
 * and reuse buffers, and reuse never lets a queue write overtake pending commands that still
 * read the old contents.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { sizeClass } from "../backends/webgpu/_pool.ts";
import { add, mul } from "../ops/binary.ts";
import { exp, neg } from "../ops/unary.ts";
import { sum } from "../ops/reduce.ts";
import { tensor } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { normals } from "../tensor/random.ts";
import { settleGarbage, webgpuBackend } from "./_backends.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test("sizeClass: ≥ 16, multiple of 16, at most 25% over the request, monotone", () => {
  let prev = 0;
  for (let bytes = 0; bytes < 70_000; bytes += 1 + (bytes >> 6)) {
    const c = sizeClass(bytes);
    assert(c >= Math.max(16, bytes), `class ${c} < ${bytes}`);
    assertEquals(c % 16, 0);
    if (bytes > 64) assert(c <= bytes * 1.25 + 16, `class ${c} wastes too much for ${bytes}`);
    assert(c >= prev, "classes are monotone");
    prev = c;
  }
  assertEquals(sizeClass(1 << 20), 1 << 20);
  assertEquals(sizeClass((1 << 20) + 1), 1.25 * (1 << 20));
});

Deno.test({
  name: "2,000 ops with disposal leave live bytes flat and reuse pooled buffers",
  ...opts,
  fn: async () => {
    const b = await webgpuBackend();
    if (!b) return;
    const x = tensor(normals(300, 11), { shape: [3, 100], backend: b });
    const y = tensor(normals(100, 12), { shape: [100], backend: b });
    await x.data(); // settle uploads so the baseline is quiet
    await settleGarbage();
    const before = b.memory();
    const stats0 = b.poolStats();
    let acc = tensor(new Float32Array(300), { shape: [3, 100], backend: b });
    let pooledMidway = 0;
    // 4 ops an iteration (acc += exp(−x·y)), 2,000 in all; every temporary is disposed.
    for (let i = 0; i < 500; i++) {
      const t1 = mul(x, y);
      const t2 = neg(t1);
      const t3 = exp(t2);
      const next = add(acc, t3);
      t1.dispose();
      t2.dispose();
      t3.dispose();
      acc.dispose();
      acc = next;
      if (i === 250) {
        await acc.data();
        pooledMidway = b.memory().pooledBytes;
      }
    }
    const got = await acc.data();
    const after = b.memory();
    acc.dispose();
    const end = b.memory();
    // Live memory: the baseline plus the one accumulator, then exactly the baseline.
    assertEquals(after.liveCount, before.liveCount + 1);
    assertEquals(end.liveBytes, before.liveBytes);
    assertEquals(end.liveCount, before.liveCount);
    // The pool reached a steady size: it did not grow from iteration 250 to 500.
    assert(
      after.pooledBytes <= pooledMidway + 4096,
      `pool grew from ${pooledMidway} to ${after.pooledBytes} bytes`,
    );
    const stats = b.poolStats();
    const created = stats.created - stats0.created;
    const reused = stats.reused - stats0.reused;
    assert(reused > 1500, `expected most buffers reused, got ${reused} reused, ${created} new`);
    assert(created < 300, `expected few new buffers, got ${created}`);
    // And the arithmetic survived the reuse: 500·exp(−x·y) computed in float64.
    const xv = await x.data();
    const yv = await y.data();
    for (let i = 0; i < 300; i++) {
      const want = 500 * Math.exp(-Math.fround(xv[i] * yv[i % 100]));
      assert(
        Math.abs(got[i] - want) <= 1e-4 * Math.abs(want) + 1e-6,
        `element ${i}: ${got[i]} vs ${want}`,
      );
    }
    x.dispose();
    y.dispose();
  },
});

Deno.test({
  name: "an upload into a recycled buffer does not overtake pending reads of its old data",
  ...opts,
  fn: async () => {
    const b = await webgpuBackend();
    if (!b) return;
    const results: Tensor[] = [];
    const wants: number[] = [];
    // Each step uploads a, encodes sum(a) (not submitted), frees a, and uploads c of the same
    // size — which must not land in a's buffer before sum(a) has run.
    for (let i = 0; i < 20; i++) {
      const v = normals(64, 100 + i);
      wants.push(v.reduce((s, x) => s + x, 0));
      const a = tensor(v, { backend: b });
      results.push(sum(a));
      a.dispose();
      const c = tensor(new Float32Array(64).fill(1000 + i), { backend: b });
      results.push(sum(c));
      c.dispose();
    }
    for (let i = 0; i < 20; i++) {
      const [s] = await results[2 * i].data();
      const [t] = await results[2 * i + 1].data();
      assert(Math.abs(s - wants[i]) < 1e-4, `step ${i}: sum ${s}, want ${wants[i]}`);
      assertEquals(t, 64 * (1000 + i));
    }
    for (const r of results) r.dispose();
  },
});
