/**
 * `la.quantize` / `la.dequantize` (VARIANTS.md, "Quantized KV") on both backends: the
 * round trip stays within the format's bound (int8: scale/2 per element; float8e4m3: a
 * relative 2⁻⁴ for normal values, scale·2⁻¹⁰ below them, exact on representable ones), the
 * scales are max|x| / 127 (or / 448) over their block, NaN/∞ give scale NaN (documented
 * result), bad input is a named error, and memory returns after dispose.
 */
import { equal, ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import type { Backend } from "../backends/backend.ts";
import { dequantize, quantize, type QuantizedTensor } from "../ops/quantize.ts";
import { tensor } from "../tensor/creation.ts";
import type { QuantDType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DisposedTensorError,
  DTypeError,
  ShapeError,
} from "../tensor/errors.ts";
import { E4M3_VALUES } from "../tensor/float8.ts";
import { quantBlock, quantTop } from "../tensor/quant_format.ts";
import { describeBackends, numRuns } from "./_backends.ts";
import { expectError, twinOf } from "./_assert.ts";

/** Seeded values with magnitudes spread over many octaves (per element and per row). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Float32Array.from({ length: n }, () => (rnd() - 0.5) * 2 ** Math.floor(rnd() * 24 - 12));
}

const shapeArb = fc.record({
  B: fc.integer({ min: 1, max: 2 }),
  H: fc.integer({ min: 1, max: 3 }),
  N: fc.integer({ min: 1, max: 9 }),
  D: fc.integer({ min: 1, max: 40 }), // not only multiples of 4: rows share packed words
  seed: fc.integer({ min: 1, max: 2 ** 30 }),
  f16: fc.boolean(),
});

/** float32 max|x| over each block, or NaN where a block holds NaN/∞. */
function blockMax(x: Float32Array, block: number): number[] {
  const out: number[] = [];
  for (let at = 0; at < x.length; at += block) {
    let m = 0;
    for (let i = at; i < at + block; i++) {
      m = Number.isFinite(x[i]) ? Math.max(m, Math.abs(x[i])) : NaN;
      if (Number.isNaN(m)) break;
    }
    out.push(m);
  }
  return out;
}

async function roundTrip(backend: Backend, dtype: QuantDType) {
  await fc.assert(
    fc.asyncProperty(shapeArb, async ({ B, H, N, D, seed, f16 }) => {
      const shape = [B, H, N, D];
      const x = tensor(values(B * H * N * D, seed), {
        shape,
        backend,
        dtype: f16 ? "float16" : "float32",
      });
      const xs = await x.data();
      const qt = quantize(x, { dtype });
      const [scale, data, deq] = await Promise.all([
        qt.scale.data(),
        qt.data.data(),
        dequantize(qt).data(),
      ]);
      const block = quantBlock(dtype, shape);
      const maxes = blockMax(xs, block);
      // GPU division may be off by a few ulps (WGSL allows 2.5); the CPU's is exact.
      const divUlps = 2 ** -21;
      maxes.forEach((m, b) => {
        const want = Math.fround(m / quantTop(dtype));
        assert(Math.abs(scale[b] - want) <= want * divUlps, `scale ${b}: ${scale[b]} vs ${want}`);
      });
      for (let i = 0; i < xs.length; i++) {
        const s = scale[Math.floor(i / block)];
        const err = Math.abs(deq[i] - xs[i]);
        let bound: number;
        if (dtype === "int8") {
          assert(Number.isInteger(data[i]) && Math.abs(data[i]) <= 127, `int8 data ${data[i]}`);
          bound = s / 2 + s * 127 * 2 ** -20; // half a step, plus float32 rounding of s·q
        } else {
          assert(E4M3_VALUES.includes(data[i]), `e4m3 data ${data[i]}`);
          const normal = Math.abs(xs[i]) >= s * 2 ** -6;
          bound = normal ? Math.abs(xs[i]) * 2 ** -4 : s * 2 ** -10;
          bound = bound * (1 + 2 ** -18) + Math.abs(xs[i]) * 2 ** -20;
        }
        if (!(err <= bound)) {
          throw new Error(`${dtype} ${shape} elem ${i}: x ${xs[i]} → ${deq[i]} (scale ${s})`);
        }
      }
      for (const t of [x, qt.data, qt.scale]) t.dispose();
    }),
    { numRuns: numRuns(backend, 40) },
  );
}

describeBackends("int8: dequantize(quantize(x)) is within scale/2", (b) => roundTrip(b, "int8"));
describeBackends(
  "float8e4m3: dequantize(quantize(x)) is within a relative 2⁻⁴ (normal values)",
  (b) => roundTrip(b, "float8e4m3"),
);

describeBackends("quantize is exact on representable values", async (backend) => {
  // float8e4m3: every finite E4M3 value times a power of two, 448 in each head (scale 2^k).
  const finite = [...E4M3_VALUES].filter(Number.isFinite);
  for (const k of [-3, 0, 5]) {
    const head = [...finite, 448].map((v) => v * 2 ** k); // 254 + 1 values; 255 = 15 × 17
    const xs = [...head, ...head.map((v) => -v)];
    const x = tensor(xs, { shape: [1, 2, 15, 17], backend });
    const qt = quantize(x, { dtype: "float8e4m3" });
    equal(String(await qt.scale.data()), String([2 ** k, 2 ** k]));
    const got = await dequantize(qt).data();
    assert(got.every((v, i) => Object.is(v, Math.fround(xs[i]))), `exact at 2^${k}`);
  }
  // int8: integers times the scale max/127 with max = 127·2^k.
  const ints = Array.from({ length: 255 }, (_, i) => i - 127);
  const x = tensor(ints.map((v) => v / 4), { shape: [1, 1, 5, 51], backend });
  const qt = quantize(x, { dtype: "int8" });
  const got = await dequantize(qt).data();
  // Rows hold different maxima, so only rows whose max is 127/4 are on the grid of 1/4.
  const rowMax = [0, 1, 2, 3, 4].map((r) =>
    Math.max(...ints.slice(r * 51, r * 51 + 51).map(Math.abs))
  );
  for (let r = 0; r < 5; r++) {
    if (rowMax[r] !== 127) continue;
    for (let i = r * 51; i < r * 51 + 51; i++) equal(got[i], ints[i] / 4, `int8 elem ${i}`);
  }
});

describeBackends("zeros, NaN and ±∞: scale 0 or NaN, as documented", async (backend) => {
  for (const dtype of ["int8", "float8e4m3"] as const) {
    // Heads: [zeros row, NaN row], [∞ row, normal row]; int8 scales per row, E4M3 per head.
    const xs = [0, 0, 0, 0, 1, NaN, 2, 3, Infinity, 1, 2, 3, -4, 1, 2, 8];
    const x = tensor(xs, { shape: [1, 2, 2, 4], backend });
    const qt = quantize(x, { dtype });
    const [scale, data, deq] = await Promise.all([
      qt.scale.data(),
      qt.data.data(),
      dequantize(qt).data(),
    ]);
    if (dtype === "int8") {
      equal(scale[0], 0);
      assert(Number.isNaN(scale[1]) && Number.isNaN(scale[2]), `${dtype}: NaN, ∞ rows`);
      equal(scale[3], Math.fround(8 / 127));
      assert(data.slice(0, 12).every((v) => v === 0), "data 0 in zero and non-finite rows");
      assert(deq.slice(0, 4).every((v) => v === 0), "a zero row dequantizes to 0");
      assert(deq.slice(4, 12).every(Number.isNaN), "non-finite rows dequantize to NaN");
      equal(deq[15], 8);
    } else {
      assert(Number.isNaN(scale[0]) && Number.isNaN(scale[1]), `${dtype}: both heads`);
      assert(data.every((v) => v === 0) && deq.every(Number.isNaN), "data 0, dequantize NaN");
    }
  }
  const z = quantize(tensor(new Float32Array(8), { shape: [1, 1, 2, 4], backend }), {
    dtype: "float8e4m3",
  });
  equal(String(await z.scale.data()), "0");
  assert((await dequantize(z).data()).every((v) => v === 0), "zeros stay zeros");
});

describeBackends("quantize and dequantize refuse bad input with named errors", (backend) => {
  const x = tensor(new Float32Array(24).fill(1), { shape: [1, 2, 3, 4], backend });
  for (const dtype of ["int4", "float16", undefined, 8]) {
    expectError(
      DTypeError,
      () => quantize(x, { dtype } as never),
      ['"int8"', "float8e4m3"],
      `${dtype}`,
    );
  }
  expectError(DTypeError, () => quantize(x, undefined as never), ["dtype"], "no options");
  expectError(ArgumentError, () => quantize(x, { dtype: "int8", scale: 1 } as never), [
    '"scale"',
  ], "unknown option");
  expectError(ShapeError, () => quantize(x.reshape([2, 3, 4]), { dtype: "int8" }), [
    "[2, 3, 4]",
  ], "rank 3");
  const qt = quantize(x, { dtype: "int8" });
  expectError(DTypeError, () => quantize(qt.data, { dtype: "int8" }), ["la.dequantize"], "twice");
  expectError(ShapeError, () => dequantize({ ...qt, scale: qt.scale.reshape([1, 6]) }), [
    "[1, 2, 3]",
    "[1, 6]",
  ], "scale of the wrong shape");
  const f8 = quantize(x, { dtype: "float8e4m3" });
  expectError(
    ShapeError,
    () => dequantize({ ...f8, scale: qt.scale }),
    ["[1, 2]", "[1, 2, 3]"],
    "int8 scales for E4M3",
  );
  expectError(
    DTypeError,
    () => dequantize({ ...qt, dtype: "float8e4m3" }),
    ["int8"],
    "dtype ≠ data",
  );
  expectError(DTypeError, () => dequantize({ ...qt, dtype: "int4" } as never), ['"int4"'], "dtype");
  expectError(
    DTypeError,
    () => dequantize({ ...qt, scale: qt.data.reshape([1, 2, 12]) } as never),
    [
      "int8",
    ],
    "int8 scales",
  );
  expectError(ArgumentError, () => dequantize(null as never), ["dtype, data, scale"], "null");
  expectError(ArgumentError, () => dequantize({ ...qt, data: [1] } as never), ["Tensor"], "data");
  const other = tensor(new Float32Array(6), { shape: [1, 2, 3], backend: twinOf(backend) });
  expectError(BackendMismatchError, () => dequantize({ ...qt, scale: other }), [
    backend.name,
    `${backend.name}-twin`,
  ], "data and scale on two backends");
  qt.scale.dispose();
  expectError(
    DisposedTensorError,
    () => dequantize(qt as QuantizedTensor),
    ["dispose"],
    "disposed",
  );
});

describeBackends("memory returns after quantize, dequantize and dispose", async (backend) => {
  const x = tensor(values(2 * 3 * 5 * 7, 9), { shape: [2, 3, 5, 7], backend });
  await x.data();
  for (const dtype of ["int8", "float8e4m3"] as const) {
    // Each count is compared with one taken in the same task: tensors that other tests
    // dropped without disposing are released by a finalizer, which runs between tasks (an
    // await here once let 38 of them go between the two readings).
    const before = backend.memory();
    const qt = quantize(x, { dtype });
    const d = dequantize(qt);
    const made = backend.memory();
    equal(made.liveCount, before.liveCount + 3);
    await d.data(); // the work done: the three tensors still held, and then released whole
    const held = backend.memory();
    for (const t of [qt.data, qt.scale, d]) t.dispose();
    const after = backend.memory();
    equal(after.liveCount, held.liveCount - 3);
    equal(after.liveBytes, held.liveBytes - (made.liveBytes - before.liveBytes));
  }
  x.dispose();
});
