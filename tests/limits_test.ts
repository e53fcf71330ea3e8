/**
 * Device limits: K/V larger than one storage binding are stored across several buffers and
 * attention runs on each part, merging the states. Checked two ways:
 *
 * - on a device with a small split size (`partBytes`), where every path is cheap: flash,
 *   flash-decoding and lean over ragged lengths (one ending inside the first part, one at 0,
 *   one on a part boundary), float32 and float16, causal prefill across parts, against the
 *   float64 reference; exact round trips, memory accounting, and the refusals (other ops, a
 *   reshape that moves the split axis, an unsplittable tensor, causal prefill within Sq − 1
 *   keys of a boundary), each a {@link LimitError} naming the limit; and a fast-check
 *   property over shapes, GQA groups, part counts and lengths snapped around part boundaries;
 * - on a device created with WebGPU's default limits (128 MiB binding, 256 MiB buffer), with
 *   K/V of 143 MB each, so the real `maxStorageBufferBindingSize` forces the split.
 *
 * GPU validation errors caught by error scopes: tests/webgpu_device_test.ts. The full 4 GiB
 * case (K/V [1, 32, 524288, 128] float16) runs by hand on a real GPU:
 * tests/gpu/limits_long_context.ts.
 */
import fc from "npm:fast-check@4.10.2";
import { ok as assert, throws } from "node:assert/strict";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import { PART_ALIGN, partLayout } from "../backends/webgpu/_parts.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { naiveAttention } from "../attention/naive.ts";
import { add } from "../ops/binary.ts";
import { exp } from "../ops/unary.ts";
import { matmul } from "../ops/matmul.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { DisposedTensorError, LimitError } from "../tensor/errors.ts";
import { normals } from "../tensor/random.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { maxAbs, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { ownWebgpu, settleGarbage, webgpuBackend } from "./_backends.ts";
import { expectError } from "./_assert.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  Sq: number;
  N: number;
  D: number;
  kvLens: number[];
  causal?: boolean;
  dtype: DType;
  seed: number;
}

interface Inputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  c: Case;
  ref: { out: Float64Array; lse: Float64Array };
}

async function inputs(backend: WebGpuBackend, c: Case): Promise<Inputs> {
  const { B, Hq, Hkv, Sq, N, D, dtype, seed } = c;
  const q = randn([B, Hq, Sq, D], { seed, dtype, backend });
  const k = randn([B, Hkv, N, D], { seed: seed + 1, dtype, backend });
  const v = randn([B, Hkv, N, D], { seed: seed + 2, dtype, backend });
  // The reference sees exactly the stored (rounded) values, read back through the split.
  const ref = referenceAttention({
    q: await q.data(),
    k: await k.data(),
    v: await v.data(),
    ...c,
  });
  return { q, k, v, c, ref };
}

/**
 * float32: rounding of scores and sums (growing slowly with N). float16: the output's own
 * rounding (parts run and merge in float32; only the merged output is rounded).
 */
function tolerances(x: Inputs): { out: number; lse: number } {
  const grow = Math.max(1, Math.log2(x.c.N) / 4);
  let out = 1e-5 * Math.max(1e-3, maxAbs(x.ref.out)) * grow;
  const lse = 1e-5 * Math.max(1, maxAbs(Array.from(x.ref.lse).filter(Number.isFinite))) * grow;
  if (x.c.dtype === "float16") out += 2 * 2 ** -11 * maxAbs(x.ref.out);
  return { out, lse };
}

async function check(x: Inputs, r: { out: Tensor; lse: Tensor }, what: string): Promise<void> {
  const out = await r.out.data();
  const lse = await r.lse.data();
  const tol = tolerances(x);
  const eo = maxAbsDiff(out, x.ref.out);
  const el = maxAbsDiff(lse, x.ref.lse);
  const c = JSON.stringify({ ...x.c, dtype: x.c.dtype });
  assert(eo <= tol.out, `${what}: out error ${eo} > ${tol.out} (${c})`);
  assert(el <= tol.lse, `${what}: lse error ${el} > ${tol.lse} (${c})`);
  r.out.dispose();
  r.lse.dispose();
}

function algorithms(x: Inputs) {
  const o = { kvLens: x.c.kvLens, causal: x.c.causal, returnLse: true } as const;
  return [
    ["flash", () => flashAttention(x.q, x.k, x.v, { ...o, blockN: 64 })],
    ["flash-decoding", () => flashAttention(x.q, x.k, x.v, { ...o, numSplits: 3 })],
    ["lean", () => leanAttention(x.q, x.k, x.v, { ...o, tileSize: 32, grid: 5 })],
  ] as const;
}

let small: Promise<WebGpuBackend> | null = null;
/**
 * Tensors over 128 KiB are split: K/V [3, 2, 700, 16] become parts [0, 256), [256, 512),
 * [512, 700) in float32 (179 KB) and [0, 512), [512, 700) in float16 (134 KB).
 */
const PART_BYTES = 128 * 1024;
function smallParts(): Promise<WebGpuBackend> {
  return small ??= ownWebgpu({ partBytes: PART_BYTES });
}

let tinyB: Promise<WebGpuBackend> | null = null;
function tiny(): Promise<WebGpuBackend> {
  return tinyB ??= ownWebgpu({ partBytes: 4096 });
}

Deno.test("partLayout: parts fit, are tile-aligned, cover the axis in order", () => {
  const bytes = (shape: number[]) => shape.reduce((a, b) => a * b, 4);
  assert(partLayout([3, 2, 700, 16], 4, bytes([3, 2, 700, 16]), "x") === null);
  const cases: [number[], number, number][] = [
    [[3, 2, 700, 16], 4, PART_BYTES],
    [[1, 32, 524288, 128], 2, 2 ** 31 - 4], // the H200 case: 4 GiB of f16 K
    [[1, 2, 140_000, 128], 4, 2 ** 27],
    [[5, 1000, 7], 4, 1000], // fewer than PART_ALIGN rows fit a part
  ];
  for (const [shape, per, max] of cases) {
    const l = partLayout(shape, per, max, "limit")!;
    const slab = l.outer * l.row * per;
    assert(l.ranges[0][0] === 0 && l.ranges.at(-1)![1] === shape.at(-2), `${shape}: covers`);
    l.ranges.forEach(([n0, n1], i) => {
      assert(n1 > n0 && (n1 - n0) * slab <= max, `${shape}: part ${i} fits`);
      if (i > 0) assert(n0 === l.ranges[i - 1][1], `${shape}: contiguous`);
      if (max >= slab * PART_ALIGN) assert(n0 % PART_ALIGN === 0, `${shape}: aligned`);
    });
  }
  expectError(LimitError, () => partLayout([100000], 4, 1000, "lim"), ["lim", "rank"], "rank 1");
  expectError(LimitError, () => partLayout([2, 10, 300], 4, 1000, "lim"), ["lim", "2400"], "row");
});

Deno.test({
  name: "K/V in parts (small part size): flash, flash-decoding, lean match the reference",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const b = await smallParts();
    const t0 = performance.now();
    const base = { B: 3, Hq: 4, Hkv: 2, Sq: 1, N: 700, D: 16 };
    const cases: Case[] = [
      // Ends: the last part, inside the first part, no keys at all.
      { ...base, kvLens: [700, 200, 0], dtype: "float32", seed: 10 },
      // Exactly on the part boundaries 256 and 512, and one key past one.
      { ...base, kvLens: [512, 513, 256], dtype: "float32", seed: 20 },
      { ...base, kvLens: [700, 37, 600], dtype: "float16", seed: 30 },
      // Prefill, causal: rows see different prefixes of the part holding kvLens[b]; parts
      // wholly before it are seen whole (part 0 mixes both kinds across the batch).
      { ...base, Sq: 5, causal: true, kvLens: [700, 200, 600], dtype: "float32", seed: 40 },
      { ...base, Sq: 70, causal: true, kvLens: [700, 3, 0], dtype: "float16", seed: 50 },
      { ...base, Sq: 70, causal: false, kvLens: [650, 300, 700], dtype: "float32", seed: 60 },
    ];
    await settleGarbage();
    const held = b.memory();
    for (const c of cases) {
      const x = await inputs(b, c);
      const parts = b.storageParts({ id: x.k.id, shape: x.k.shape, dtype: c.dtype })!;
      const ends = parts.map((p) => p.n1).join();
      assert(ends === (c.dtype === "float32" || !b.nativeF16 ? "256,512,700" : "512,700"), ends);
      for (const [name, f] of algorithms(x)) await check(x, f(), `${name} ${c.dtype}`);
      for (const t of [x.q, x.k, x.v]) t.dispose();
    }
    const now = b.memory();
    assert(now.liveCount === held.liveCount && now.liveBytes === held.liveBytes, "no leak");
    console.log(
      `  ${cases.length} cases × 3 algorithms: ${(performance.now() - t0).toFixed(0)} ms`,
    );
  },
});

Deno.test({
  name: "K/V in parts property: any lengths, parts, GQA, causal prefill agree with the reference",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    // Parts of 4 KiB: a handful of parts of unaligned length (fewer than 256 rows fit).
    const b = await tiny();
    const t0 = performance.now();
    const drawn = fc.record({
      B: fc.integer({ min: 1, max: 3 }),
      Hkv: fc.integer({ min: 1, max: 2 }),
      group: fc.integer({ min: 1, max: 2 }),
      Sq: fc.constantFrom(1, 3, 5), // q stays under the split size: only K/V may be split
      N: fc.integer({ min: 300, max: 700 }),
      D: fc.constantFrom(8, 12, 16),
      causal: fc.boolean(),
      dtype: fc.constantFrom<DType>("float32", "float16"),
      // A length anywhere, or just around a part boundary (where causal prefill is refused).
      lens: fc.array(
        fc.record({
          u: fc.double({ min: 0, max: 1, noNaN: true }),
          snap: fc.boolean(),
          off: fc.integer({ min: -2, max: 4 }),
        }),
        { minLength: 3, maxLength: 3 },
      ),
      seed: fc.integer({ min: 1, max: 1e6 }),
    });
    await fc.assert(
      fc.asyncProperty(drawn, async (d) => {
        const per = d.dtype === "float16" && b.nativeF16 ? 2 : 4;
        const { ranges } = partLayout([d.B, d.Hkv, d.N, d.D], per, b.partBytes, "")!;
        const kvLens = d.lens.slice(0, d.B).map(({ u, snap, off }) => {
          if (!snap) return Math.round(u * d.N);
          const edge = ranges[Math.floor(u * (ranges.length - 1))][1];
          return Math.max(0, Math.min(d.N, edge + off));
        });
        const c: Case = { ...d, Hq: d.Hkv * d.group, kvLens };
        const x = await inputs(b, c);
        try {
          const parts = b.storageParts({ id: x.k.id, shape: x.k.shape, dtype: c.dtype });
          assert(parts && parts.length > 1, "split");
          // Refused exactly when a part ends before kvLens[b] but within its last Sq − 1 keys.
          const close = !!c.causal && c.Sq > 1 &&
            kvLens.some((len) => parts.some((p) => p.n1 < len && len - p.n1 < c.Sq - 1));
          for (const [name, f] of algorithms(x)) {
            if (close) expectError(LimitError, f, ["causal"], name);
            else await check(x, f(), name);
          }
        } finally {
          for (const t of [x.q, x.k, x.v]) t.dispose();
        }
      }),
      { numRuns: 25, seed: 20261125 },
    );
    console.log(`  25 runs: ${(performance.now() - t0).toFixed(0)} ms`);
  },
});

Deno.test({
  name: "K/V in parts: round trips exactly, counts in memory(), dispose frees every part",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const b = await smallParts();
    for (const dtype of ["float32", "float16"] as const) {
      await settleGarbage();
      const before = b.memory();
      const values = normals(3 * 2 * 700 * 16, 7);
      const t = tensor(values, { shape: [3, 2, 700, 16], dtype, backend: b });
      const parts = b.storageParts({ id: t.id, shape: t.shape, dtype })!;
      assert(parts.length > 1, "stored split");
      const want = dtype === "float16" ? Float32Array.from(new Float16Array(values)) : values;
      const got = await t.data();
      assert(got.length === want.length && got.every((x, i) => x === want[i]), "data()");
      const back = await t.to(cpu());
      const copy = await back.data();
      assert(copy.every((x, i) => x === want[i]), "to(cpu)");
      const up = await back.to(b); // and back up: split again, same values
      assert((await up.data()).every((x, i) => x === want[i]), "to(webgpu)");
      const during = b.memory();
      assert(during.liveCount === before.liveCount + 2, `liveCount ${during.liveCount}`);
      const bytes = values.length * (dtype === "float16" && b.nativeF16 ? 2 : 4);
      assert(during.liveBytes - before.liveBytes >= 2 * bytes, "liveBytes counts every part");
      t.dispose();
      up.dispose();
      back.dispose();
      const after = b.memory();
      assert(
        after.liveBytes === before.liveBytes,
        `freed: ${after.liveBytes} vs ${before.liveBytes}`,
      );
      assert(after.liveCount === before.liveCount, "liveCount back");
      throws(() => t.data(), DisposedTensorError);
    }
  },
});

Deno.test({
  name:
    "K/V in parts: other ops, moved axes, tensors that cannot be cut and close causal part boundaries throw LimitError",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const b = await smallParts();
    const limit = String(PART_BYTES);
    const k = randn([3, 2, 700, 16], { seed: 1, backend: b });
    const q = randn([3, 4, 5, 16], { seed: 2, backend: b });
    const small = randn([3, 2, 16, 1], { seed: 3, backend: b });
    const only = "only the attention ops";
    expectError(LimitError, () => exp(k), ["webgpu exp", limit, "partBytes", only], "exp");
    expectError(LimitError, () => add(k, k), ["webgpu add", limit, only], "add");
    expectError(LimitError, () => matmul(k, small), ["webgpu matmul", limit], "matmul");
    // naive attention materialises N-wide scores: it refuses split K/V.
    expectError(LimitError, () => naiveAttention(q, k, k), [limit], "naive");
    // A view that moves the split axis cannot be attended to (nor used by any op).
    const moved = k.reshape([3, 2, 350, 32]);
    const q32 = randn([3, 2, 1, 32], { seed: 4, backend: b });
    expectError(LimitError, () => flashAttention(q32, moved, moved), ["350", "reshape"], "moved");
    // ... but a view that keeps the last two axes is fine.
    const kept = k.reshape([6, 1, 700, 16]);
    const q6 = randn([6, 1, 1, 16], { seed: 5, backend: b });
    const viaView = await flashAttention(q6, kept, kept).data();
    assert(viaView.every(Number.isFinite), "attention over a kept-axes view");
    // Split only one of k and v: refused (they must be split alike).
    const vWhole = b.upload(new Float32Array(3 * 2 * 700 * 16), "float32"); // no shape: whole
    const { Tensor } = await import("../tensor/tensor.ts");
    const v1 = new Tensor(b, vWhole, [3, 2, 700, 16], "float32");
    expectError(
      LimitError,
      () => flashAttention(q, k, v1),
      ["stored whole", "the same parts"],
      "kv",
    );
    // Causal prefill with a part boundary (512) within Sq − 1 = 4 keys of kvLens: refused,
    // before anything is allocated.
    const held = b.memory();
    expectError(
      LimitError,
      () => leanAttention(q, k, k, { causal: true, kvLens: [514, 700, 100] }),
      ["causal", "512", "kvLens[0] = 514"],
      "close causal split",
    );
    const now = b.memory();
    assert(now.liveCount === held.liveCount && now.liveBytes === held.liveBytes, "no leak");
    // Nothing can split a rank-1 tensor or one whose single row index exceeds the limit.
    expectError(
      LimitError,
      () => randn([PART_BYTES], { seed: 6, backend: b }),
      [limit, "rank"],
      "r1",
    );
    expectError(
      LimitError,
      () => randn([2, 3, 20_000], { seed: 7, backend: b }),
      [limit, "no cut into parts"],
      "one row too big",
    );
    for (const t of [k, q, small, q32, q6, v1]) t.dispose();
    // The backend still works.
    const t = tensor([1, 2, 3], { backend: b });
    assert(Math.abs((await exp(t).data())[1] - Math.exp(2)) < 1e-5, "backend still works");
  },
});

Deno.test({
  name:
    "default limits (128 MiB binding): 143 MB K/V are stored in parts by maxStorageBufferBindingSize",
  ...opts,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    const t0 = performance.now();
    const b = await ownWebgpu({ defaultLimits: true });
    try {
      const bind = b.limits.maxStorageBufferBindingSize;
      const c: Case = {
        B: 2,
        Hq: 4,
        Hkv: 1,
        Sq: 1,
        N: 140_000,
        D: 128,
        kvLens: [140_000, 50_000],
        dtype: "float32",
        seed: 70,
      };
      const kvBytes = c.B * c.Hkv * c.N * c.D * 4;
      assert(kvBytes > bind, `K/V of ${kvBytes} bytes must exceed the binding ${bind}`);
      const x = await inputs(b, c);
      const parts = b.storageParts({ id: x.k.id, shape: x.k.shape, dtype: "float32" })!;
      assert(parts.length === Math.ceil(kvBytes / bind), `${parts.length} parts`);
      const t1 = performance.now();
      for (const [name, f] of algorithms(x)) await check(x, f(), `${name} (default limits)`);
      const t2 = performance.now();
      expectError(LimitError, () => exp(x.k), ["maxStorageBufferBindingSize", String(bind)], "op");
      const memo = b.memory().liveBytes;
      x.k.dispose();
      assert(memo - b.memory().liveBytes >= kvBytes, "dispose frees every part");
      x.q.dispose();
      x.v.dispose();
      console.log(
        `  ${parts.length} parts; inputs + reference ${(t1 - t0).toFixed(0)} ms, ` +
          `3 algorithms ${(t2 - t1).toFixed(0)} ms`,
      );
    } finally {
      b.destroy();
    }
  },
});
