/**
 * Attention over quantized K/V (VARIANTS.md, "Quantized KV"): every algorithm given k, v as
 * `QuantizedTensor`s (int8 per token, float8e4m3 per head; float32 and float16 q; GQA, ragged
 * lengths, causal) equals the float64 reference over `dequantize(qt)` within the float32
 * tolerance, and on the CPU has exactly the bits of float32 attention over the dequantized
 * tensors with the same schedule. The error against the unquantized float64 result is printed
 * (information: it is the quantization's, not the kernels'). Bad input is a named error, and
 * nothing leaks.
 */
import { ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { disableSimdKernelsForTesting } from "../backends/cpu/_attention_simd.ts";
import { closeAttentionWorkers, cpuAttentionParallel } from "../backends/cpu/_attention_worker.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention, leanAttentionPlan } from "../attention/lean.ts";
import { naiveAttention } from "../attention/naive.ts";
import type { AttentionState } from "../attention/merge.ts";
import { dequantize, quantize, type QuantizedTensor } from "../ops/quantize.ts";
import { tensor } from "../tensor/creation.ts";
import type { ComputeDType, QuantDType } from "../tensor/dtype.ts";
import { DTypeError, ShapeError } from "../tensor/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { infoOf } from "./_paged.ts";
import { attentionTolerances, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { describeBackends } from "./_backends.ts";
import { expectError } from "./_assert.ts";
import { type Dims, hostProblem, sameBits, upload } from "./_paged_api.ts";

const FORMATS: QuantDType[] = ["int8", "float8e4m3"];

/** The algorithms (and splits, grids) under test, with options that fix the schedule. */
const ALGOS: [string, (q: Tensor, k: KV, v: KV, o: object) => Tensor | AttentionState][] = [
  ["naive", (q, k, v, o) => naiveAttention(q, k, v, o)],
  ["flash", (q, k, v, o) => flashAttention(q, k, v, { blockN: 8, ...o })],
  ["flash-decoding", (q, k, v, o) => flashAttention(q, k, v, { blockN: 8, numSplits: 3, ...o })],
  ["lean", (q, k, v, o) => leanAttention(q, k, v, { tileSize: 8, grid: 5, ...o })],
];
type KV = Tensor | QuantizedTensor;

const state = (r: Tensor | AttentionState) => r as AttentionState;
const info = infoOf;

async function check(backend: Backend, dims: Dims, qDtype: ComputeDType, seed: number) {
  const p = hostProblem(seed, dims, qDtype);
  const { B, N } = dims;
  const kvLens = Array.from({ length: B }, (_, b) => (b === 1 ? Math.ceil(N / 3) : N));
  const t = upload(p, backend);
  for (const dtype of FORMATS) {
    const kq = quantize(t.k, { dtype });
    const vq = quantize(t.v, { dtype });
    const kd = dequantize(kq);
    const vd = dequantize(vq);
    const k64 = await kd.data();
    const v64 = await vd.data();
    for (const causal of [false, true]) {
      const opts = { kvLens, causal, returnLse: true };
      const ref = referenceAttention({ ...p, k: k64, v: v64, kvLens, causal });
      const unq = referenceAttention({ ...p, kvLens, causal });
      const tol = attentionTolerances(ref, N, qDtype);
      for (const [name, run] of ALGOS) {
        const what = `${backend.name} ${dtype} q ${qDtype} ${name}${causal ? " causal" : ""}`;
        const r = state(run(t.q, kq, vq, opts));
        const out = await r.out.data();
        const err = maxAbsDiff(out, ref.out);
        assert(err <= tol.out, `${what}: max error ${err} > tolerance ${tol.out}`);
        const lseErr = maxAbsDiff(await r.lse.data(), ref.lse);
        assert(lseErr <= tol.lse, `${what}: lse error ${lseErr} > ${tol.lse}`);
        if (!causal && name === "lean") {
          console.log(
            `  ${what}: vs reference over dequantized ${err.toExponential(2)}, vs unquantized ` +
              `float64 ${maxAbsDiff(out, unq.out).toExponential(2)} (quantization error)`,
          );
        }
        if (backend.name === "cpu" && qDtype === "float32") {
          // The same schedule over the dequantized float32 tensors: the same bits.
          const f = state(run(t.q, kd, vd, opts));
          sameBits(out, await f.out.data(), `${what} out vs float32 over dequantized`);
          sameBits(await r.lse.data(), await f.lse.data(), `${what} lse`);
          f.out.dispose();
          f.lse.dispose();
        }
        r.out.dispose();
        r.lse.dispose();
      }
    }
    for (const x of [kq.data, kq.scale, vq.data, vq.scale, kd, vd]) x.dispose();
  }
  for (const x of [t.q, t.k, t.v]) x.dispose();
}

describeBackends("attention over quantized K/V equals the reference over dequantize", async (b) => {
  const before = b.memory();
  const dims = { B: 2, Hq: 4, Hkv: 2, Sq: 3, N: 37, D: 16 };
  await check(b, dims, "float32", 11);
  await check(b, dims, "float16", 12);
  // Decode (Sq = 1), D not a multiple of 16 (padded SIMD rows), MHA.
  await check(b, { B: 2, Hq: 3, Hkv: 3, Sq: 1, N: 29, D: 20 }, "float32", 13);
  const after = b.memory();
  assert(after.liveCount === before.liveCount, `leaked ${after.liveCount - before.liveCount}`);
  assert(after.liveBytes === before.liveBytes, "leaked bytes");
});

describeBackends("quantized K/V: bad input is a named error", (backend) => {
  const before = backend.memory();
  const q = tensor(new Float32Array(2 * 4 * 8), { shape: [1, 2, 4, 8], backend });
  const x = tensor(new Float32Array(2 * 5 * 8).fill(0.5), { shape: [1, 2, 5, 8], backend });
  const k8 = quantize(x, { dtype: "int8" });
  const v8 = quantize(x, { dtype: "int8" });
  const ve = quantize(x, { dtype: "float8e4m3" });
  const badShape = tensor(new Float32Array(10), { shape: [1, 2, 5, 1], backend });
  const f16Scale = tensor(new Float32Array(10), { shape: [1, 2, 5], dtype: "float16", backend });
  for (
    const [name, run] of [
      ["flash", flashAttention],
      ["lean", leanAttention],
      ["naive", naiveAttention],
    ] as const
  ) {
    const call = (k: KV, v: KV) => () => (run as (q: Tensor, k: KV, v: KV) => unknown)(q, k, v);
    expectError(DTypeError, call(k8, ve), ["one format", "int8", "float8e4m3"], `${name} mixed`);
    expectError(DTypeError, call(k8, x), ["both be quantized", "float32 Tensor"], `${name} k only`);
    expectError(DTypeError, call(x, v8), ["both be quantized", "int8"], `${name} v only`);
    expectError(
      ShapeError,
      call({ ...k8, scale: badShape }, v8),
      ["k.scale", "[1, 2, 5]", "[1, 2, 5, 1]"],
      `${name} scale shape`,
    );
    expectError(
      DTypeError,
      call(k8, { ...v8, scale: f16Scale }),
      ["v.scale", "float32", "float16"],
      `${name} scale dtype`,
    );
    expectError(
      DTypeError,
      call({ ...k8, dtype: "float8e4m3" }, { ...v8, dtype: "float8e4m3" }),
      ["k.data", "float8e4m3", "int8"],
      `${name} data dtype`,
    );
  }
  for (const t of [q, x, k8.data, k8.scale, v8.data, v8.scale, ve.data, ve.scale]) t.dispose();
  for (const t of [badShape, f16Scale]) t.dispose();
  const after = backend.memory();
  assert(after.liveCount === before.liveCount, `leaked ${after.liveCount - before.liveCount}`);
});

Deno.test("cpu: quantized K/V on the plain-JS tile and the worker pool give the float32 bits", async () => {
  const backend = cpu();
  const dims = { B: 2, Hq: 4, Hkv: 2, Sq: 2, N: 45, D: 12 };
  const p = hostProblem(21, dims, "float32");
  const t = upload(p, backend);
  const kvLens = [45, 17];
  const opts = { tileSize: 8, grid: 7, kvLens, returnLse: true } as const;
  try {
    for (const dtype of FORMATS) {
      const kq = quantize(t.k, { dtype });
      const vq = quantize(t.v, { dtype });
      const kd = dequantize(kq);
      const vd = dequantize(vq);
      const what = `${dtype}`;
      try {
        const simd = leanAttention(t.q, kq, vq, opts);
        const plan = leanAttentionPlan(t.q, kq, vq, opts);
        const inputs = { kScale: info(kq.scale), vScale: info(vq.scale) };
        const par = await cpuAttentionParallel(
          info(t.q),
          info(kq.data),
          info(vq.data),
          plan.runs[0],
          { threads: 3, inputs },
        );
        sameBits(par.out, await simd.out.data(), `${what}: worker pool out`);
        sameBits(par.lse, await simd.lse.data(), `${what}: worker pool lse`);
        simd.out.dispose();
        simd.lse.dispose();
        disableSimdKernelsForTesting(true);
        let got, want;
        try {
          got = leanAttention(t.q, kq, vq, opts);
          want = leanAttention(t.q, kd, vd, opts);
        } finally {
          disableSimdKernelsForTesting(false);
        }
        sameBits(await got.out.data(), await want.out.data(), `${what}: plain-JS tile out`);
        sameBits(await got.lse.data(), await want.lse.data(), `${what}: plain-JS tile lse`);
        for (const x of [got.out, got.lse, want.out, want.lse]) x.dispose();
      } finally {
        for (const x of [kq.data, kq.scale, vq.data, vq.scale, kd, vd]) x.dispose();
      }
    }
  } finally {
    for (const x of [t.q, t.k, t.v]) x.dispose();
    closeAttentionWorkers();
  }
});
