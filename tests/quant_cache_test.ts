/**
 * Quantized KV caches (`kvCache({ dtype: "int8" | "float8e4m3" })`): tokens appended in random
 * chunks (several page buffers, a forked prefix copied on write) are quantized per (token,
 * kv head) on the device, and attention over the cache — every algorithm — equals the float64
 * reference over the dequantized tokens (`dequantize` of the per-token quantization of the
 * same tokens). The error against the unquantized float64 result is printed (information).
 * Bad appends are named errors; nothing leaks.
 */
import { ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { flashAttention } from "../attention/flash.ts";
import { kvCache } from "../attention/kv_cache.ts";
import { leanAttention } from "../attention/lean.ts";
import type { AttentionState } from "../attention/merge.ts";
import { naiveAttention } from "../attention/naive.ts";
import { dequantize, quantize } from "../ops/quantize.ts";
import { tensor } from "../tensor/creation.ts";
import type { ComputeDType, QuantDType } from "../tensor/dtype.ts";
import { DTypeError } from "../tensor/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { attentionTolerances, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { describeBackends } from "./_backends.ts";
import { expectError } from "./_assert.ts";
import { fillCache, type HostProblem, hostProblem, rng, upload } from "./_paged_api.ts";
import type { KVCache } from "../attention/kv_cache.ts";

const ALGOS: [string, (q: Tensor, c: KVCache) => Tensor | AttentionState][] = [
  ["naive", (q, c) => naiveAttention(q, c, { returnLse: true })],
  ["flash", (q, c) => flashAttention(q, c, { blockN: 4, returnLse: true })],
  ["flash-decoding", (q, c) => flashAttention(q, c, { blockN: 4, numSplits: 3, returnLse: true })],
  ["lean", (q, c) => leanAttention(q, c, { tileSize: 4, grid: 5, returnLse: true })],
];

/** The problem's K or V as the cache stores them: quantized per (token, kv head), read back. */
async function perToken(p: HostProblem, t: Tensor, dtype: QuantDType): Promise<Float32Array> {
  const { B, Hkv, N, D } = p;
  const rows = t.reshape([B, Hkv * N, 1, D]);
  const qt = quantize(rows, { dtype });
  const d = dequantize(qt);
  try {
    return await d.data();
  } finally {
    for (const x of [rows, qt.data, qt.scale, d]) x.dispose();
  }
}

async function check(backend: Backend, dtype: QuantDType, qDtype: ComputeDType, seed: number) {
  const dims = { B: 2, Hq: 4, Hkv: 2, Sq: 2, N: 23, D: 8 };
  const p = hostProblem(seed, dims, qDtype);
  const { B, Hkv, N, D } = dims;
  // Sequence 1 forks sequence 0 after `shared` tokens: its prefix is sequence 0's.
  const shared = 6;
  for (let h = 0; h < Hkv; h++) {
    const from = h * N * D;
    const to = (Hkv + h) * N * D;
    p.k.copyWithin(to, from, from + shared * D);
    p.v.copyWithin(to, from, from + shared * D);
  }
  const t = upload(p, backend);
  const cache = kvCache({
    batch: B,
    kvHeads: Hkv,
    headDim: D,
    pageSize: 4,
    capacity: 64,
    pagesPerBuffer: 3,
    dtype,
    backend,
  });
  try {
    const rand = rng(seed);
    fillCache(cache, p, [shared, 0], rand, 4, backend);
    cache.fork(0, 1); // shares a partly filled page: the next append copies it
    const lens = [N, 15];
    fillCache(cache, p, lens, rand, 5, backend);
    const kd = await perToken(p, t.k, dtype);
    const vd = await perToken(p, t.v, dtype);
    const ref = referenceAttention({ ...p, k: kd, v: vd, kvLens: lens });
    const unq = referenceAttention({ ...p, kvLens: lens });
    const tol = attentionTolerances(ref, N, qDtype);
    for (const [name, run] of ALGOS) {
      const what = `${backend.name} ${dtype} cache, q ${qDtype}, ${name}`;
      const r = run(t.q, cache) as AttentionState;
      const out = await r.out.data();
      const err = maxAbsDiff(out, ref.out);
      assert(err <= tol.out, `${what}: max error ${err} > tolerance ${tol.out}`);
      const lseErr = maxAbsDiff(await r.lse.data(), ref.lse);
      assert(lseErr <= tol.lse, `${what}: lse error ${lseErr} > ${tol.lse}`);
      if (name === "lean") {
        console.log(
          `  ${what}: vs reference over dequantized ${err.toExponential(2)}, vs unquantized ` +
            `float64 ${maxAbsDiff(out, unq.out).toExponential(2)} (quantization error)`,
        );
      }
      r.out.dispose();
      r.lse.dispose();
    }
  } finally {
    cache.dispose();
    for (const x of [t.q, t.k, t.v]) x.dispose();
  }
}

describeBackends(
  "quantized kvCache: attention equals the reference over its dequantized tokens",
  async (b) => {
    const before = b.memory();
    await check(b, "int8", "float32", 31);
    await check(b, "float8e4m3", "float32", 32);
    await check(b, "int8", "float16", 33);
    await check(b, "float8e4m3", "float16", 34);
    const after = b.memory();
    assert(after.liveCount === before.liveCount, `leaked ${after.liveCount - before.liveCount}`);
    assert(after.liveBytes === before.liveBytes, "leaked bytes");
  },
);

describeBackends("quantized kvCache: bad appends are named errors, the cache unchanged", (b) => {
  const before = b.memory();
  const cache = kvCache({
    batch: 1,
    kvHeads: 1,
    headDim: 4,
    capacity: 8,
    dtype: "int8",
    backend: b,
  });
  const x = tensor([1, 2, 3, 4], { shape: [1, 1, 1, 4], dtype: "int8", backend: b });
  try {
    expectError(DTypeError, () => cache.append(x, x), ["int8"], "int8 tokens");
    assert(cache.lens[0] === 0, "the cache is unchanged");
  } finally {
    x.dispose();
    cache.dispose();
  }
  const after = b.memory();
  assert(after.liveCount === before.liveCount, `leaked ${after.liveCount - before.liveCount}`);
});
