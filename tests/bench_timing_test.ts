/**
 * Tests of the benchmark's measuring (quick, software adapters welcome): the round order of
 * the interleaved timing and its chain timed between marks, the streaming-read ceiling kernel (it
 * reads every word exactly once) and its chunks, the CPU read ceiling's parts, and the probes'
 * decode inputs.
 */
import { ownWebgpu } from "./_backends.ts";
import { deepStrictEqual, ok } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { bindingChunks, ceilingSums, measureCeiling } from "../bench/_ceiling.ts";
import { splitRanges } from "../bench/_cpu_bench.ts";
import { decodeInputs, gpuTimesInterleaved, roundOrder } from "../bench/_timing.ts";
import { randn, tensor } from "../tensor/creation.ts";
import { add, mul } from "../ops/binary.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { normals } from "../tensor/random.ts";
import { assert, assertEquals, gpuTest } from "./_bench.ts";

Deno.test("roundOrder: a permutation each round; neighbours vary (each pair once for 4 algorithms)", () => {
  for (let n = 1; n <= 7; n++) {
    const seen = new Map<string, number>();
    for (let r = 0; r < 4; r++) {
      const row = roundOrder(n, r);
      deepStrictEqual([...row].sort((a, b) => a - b), [...Array(n).keys()], `n ${n} round ${r}`);
      for (let i = 1; i < n; i++) {
        const k = `${row[i - 1]}>${row[i]}`;
        seen.set(k, (seen.get(k) ?? 0) + 1);
      }
    }
    // No algorithm always follows the same one (with 3 or more to choose from).
    for (let b = 0; n >= 3 && b < n; b++) {
      const before = [...seen.keys()].filter((k) => k.endsWith(`>${b}`));
      ok(before.length >= 2, `n ${n}: algorithm ${b} follows only ${before}`);
    }
    if (n === 4) {
      deepStrictEqual(seen.size, 12, "every ordered pair of 4 once");
      ok([...seen.values()].every((c) => c === 1), JSON.stringify([...seen]));
    }
  }
});

Deno.test("bindingChunks: chunks cover every range, each aligned and within the limit", () => {
  fc.assert(fc.property(
    fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 4 }),
    fc.integer({ min: 1, max: 40 }),
    (sizes, maxUnits) => {
      const ranges = sizes.map((s) => ({ buffer: { size: s * 16 } as GPUBuffer }));
      const max = maxUnits * 100 + 260; // not a multiple of the alignment on purpose
      const chunks = bindingChunks(ranges, max, 256);
      for (const c of chunks) {
        assert(c.size <= max && c.size % 16 === 0 && c.offset % 256 === 0 && c.size > 0);
      }
      for (const r of ranges) {
        const mine = chunks.filter((c) => c.buffer === r.buffer);
        assertEquals(mine.reduce((a, c) => a + c.size, 0), r.buffer.size);
      }
    },
  ));
});

Deno.test("splitRanges: CPU read parts cover the bytes once", () => {
  const buf = new SharedArrayBuffer(4096);
  const parts = splitRanges([{ buf, off: 0, len: 1000 }, { buf, off: 2048, len: 1004 }], 3);
  assertEquals(parts.flat().reduce((a, r) => a + r.len, 0), 2004);
  assert(parts.length <= 3);
  assert(parts.flat().every((r) => r.off % 4 === 0 && r.len % 4 === 0));
});

gpuTest("gpuTimesInterleaved: one chain timed between marks, every call timed", async () => {
  const b = await ownWebgpu();
  try {
    const x = tensor(normals(4096, 3), { shape: [4096], backend: b });
    // Two "algorithms" whose outputs feed the next call (a cheap and a 3× dearer one).
    const cheap = (q?: Tensor) => add(q ?? x, x);
    const dear = (q?: Tensor) => {
      const a = mul(q ?? x, x);
      const c = add(a, x);
      a.dispose();
      const d = add(c, x);
      c.dispose();
      return d;
    };
    const t = await gpuTimesInterleaved(b, [cheap, dear], 8, 1);
    for (const r of t) {
      ok(r !== null && r.chained, `timed by the chain: ${JSON.stringify(r)}`);
      ok(r.ms > 0 && Number.isFinite(r.ms));
    }
    deepStrictEqual(t.map((r) => r!.passes), [1, 3]);
    x.dispose();
  } finally {
    b.destroy();
  }
});

gpuTest(
  "decodeInputs: small K/V are randn's; large ones tile randn's first 2²¹ values",
  async () => {
    const b = await ownWebgpu();
    const drawn = async (shape: number[], seed: number) => {
      const t = randn(shape, { seed, dtype: "float16", backend: b });
      const d = await t.data();
      t.dispose();
      return d;
    };
    try {
      const small = decodeInputs(b, [1, 4, 2, 96], 16);
      deepStrictEqual(await small.k.data(), await drawn([1, 2, 96, 16], 2));
      deepStrictEqual(await small.v.data(), await drawn([1, 2, 96, 16], 3));
      deepStrictEqual(small.bytes, 2 * 2 * 96 * 16 * 2);
      // 2.5 × 2²¹ elements: two whole copies of the block and half of a third.
      const big = decodeInputs(b, [1, 2, 1, 20480], 128);
      for (const [t, seed] of [[big.k, 2], [big.v, 3]] as const) {
        const got = await t.data();
        const block = await drawn([1 << 21], seed);
        deepStrictEqual(got.length, 20480 * 128);
        const bad = got.findIndex((x, i) => !Object.is(x, block[i % block.length]));
        deepStrictEqual(bad, -1, `seed ${seed}: element ${bad} is not the block's`);
      }
      for (const t of [small.q, small.k, small.v, big.q, big.k, big.v]) t.dispose();
    } finally {
      b.destroy();
    }
  },
);

gpuTest("ceiling kernel reads every 32-bit word exactly once (sums match the CPU)", async (dev) => {
  const seed = 0x5eed;
  let s = seed;
  // 10_000 vec4s over 3 workgroups: three unrolled trips and a tail per thread.
  for (const [nVec4, wg] of [[10_000, 3], [4096, 1], [100, 2]]) {
    const words = new Uint32Array(nVec4 * 4).map(
      () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0),
    );
    const buffer = dev.createBuffer({
      size: words.byteLength + 256,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    dev.queue.writeBuffer(buffer, 256, words);
    const got = await ceilingSums(dev, { buffer, offset: 256, size: words.byteLength }, wg);
    const stride = wg * 256;
    const want = new Uint32Array(wg);
    for (let t = 0; t < stride; t++) {
      const acc = [0, 0, 0, 0];
      for (let i = t; i < nVec4; i += stride) {
        for (let l = 0; l < 4; l++) acc[l] = (acc[l] + words[4 * i + l]) >>> 0;
      }
      const g = Math.floor(t / 256);
      want[g] = (want[g] + ((acc[0] ^ acc[1] ^ acc[2] ^ acc[3]) >>> 0)) >>> 0;
    }
    assertEquals([...got], [...want], `nVec4 ${nVec4}, workgroups ${wg}`);
    buffer.destroy();
  }
});

gpuTest("measureCeiling reports bytes, a positive time and consistent GB/s", async (dev) => {
  const a = dev.createBuffer({ size: 1 << 20, usage: GPUBufferUsage.STORAGE });
  const b = dev.createBuffer({ size: 1 << 19, usage: GPUBufferUsage.STORAGE });
  const r = await measureCeiling(dev, [{ buffer: a }, { buffer: b, size: 1000 }], { reps: 3 });
  assertEquals(r.bytes, (1 << 20) + 992);
  assert(r.gpuMs > 0 && Number.isFinite(r.gpuMs));
  assert(Math.abs(r.gbs - r.bytes / (r.gpuMs * 1e6)) < 1e-9 * r.gbs);
  assertEquals(r.timing, dev.features.has("timestamp-query") ? "timestamp" : "wall");
});
