/**
 * Helpers of the public paged K/V tests: seeded host problems rounded to their dtype, the
 * float64 reference over them, a KV cache filled by random chunks, and bitwise comparison.
 */
import { ok as assert, strictEqual } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { full, tensor } from "../tensor/creation.ts";
import type { ComputeDType } from "../tensor/dtype.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { KVCache } from "../attention/kv_cache.ts";
import {
  attentionTolerances,
  maxAbsDiff,
  referenceAttention,
  type RefInput,
} from "../testing/reference.ts";
import { rng } from "./_paged.ts";

export { rng };

/** Sizes of one problem: q `[B, Hq, Sq, D]`, contiguous K/V `[B, Hkv, N, D]`. */
export type Dims = Pick<RefInput, "B" | "Hq" | "Hkv" | "Sq" | "N" | "D">;

/** Host q, k, v of seeded normal-ish values, rounded to `dtype`. */
export interface HostProblem extends Dims {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dtype: ComputeDType;
}

/** Uniform values in [−2, 2) rounded to `dtype`. */
export function values(n: number, rand: () => number, dtype: ComputeDType): Float32Array {
  return Float32Array.from({ length: n }, () => {
    const x = rand() * 4 - 2;
    return dtype === "float16" ? Math.f16round(x) : x;
  });
}

/** A seeded problem. */
export function hostProblem(seed: number, dims: Dims, dtype: ComputeDType): HostProblem {
  const r = rng(seed);
  const { B, Hq, Hkv, Sq, N, D } = dims;
  return {
    ...dims,
    dtype,
    q: values(B * Hq * Sq * D, r, dtype),
    k: values(B * Hkv * N * D, r, dtype),
    v: values(B * Hkv * N * D, r, dtype),
  };
}

/** q and contiguous k, v of a problem on `backend`. */
export function upload(p: HostProblem, backend: Backend): { q: Tensor; k: Tensor; v: Tensor } {
  const { B, Hq, Hkv, Sq, N, D, dtype } = p;
  return {
    q: tensor(p.q, { shape: [B, Hq, Sq, D], dtype, backend }),
    k: tensor(p.k, { shape: [B, Hkv, N, D], dtype, backend }),
    v: tensor(p.v, { shape: [B, Hkv, N, D], dtype, backend }),
  };
}

/** Asserts `got` is within the dtype/length tolerance of the float64 reference. */
export function checkReference(
  got: Float32Array,
  p: HostProblem,
  kvLens: readonly number[],
  what: string,
  opts: Record<string, unknown> = {},
): void {
  const ref = referenceAttention({ ...p, kvLens, ...opts });
  const tol = attentionTolerances(ref, p.N, p.dtype);
  const err = maxAbsDiff(got, ref.out);
  assert(err <= tol.out, `${what}: max error ${err} > tolerance ${tol.out}`);
}

/** Bitwise equality (NaN equals NaN, −0 differs from +0). */
export function sameBits(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  strictEqual(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) {
      assert(false, `${what}: element ${i} is ${got[i]}, contiguous gives ${want[i]}`);
    }
  }
}

/**
 * Tokens `[from[b], to[b])` of the problem's K (or V) as a `[B, Hkv, S, D]` chunk, S the
 * longest range; slots past a sequence's range hold NaN (an append must not store them).
 */
export function chunk(
  p: HostProblem,
  src: Float32Array,
  from: readonly number[],
  to: readonly number[],
  backend: Backend,
): Tensor {
  const { B, Hkv, N, D } = p;
  const S = Math.max(1, ...to.map((t, b) => t - from[b]));
  const out = new Float32Array(B * Hkv * S * D).fill(NaN);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hkv; h++) {
      for (let s = 0; s < to[b] - from[b]; s++) {
        const i = ((b * Hkv + h) * N + from[b] + s) * D;
        out.set(src.subarray(i, i + D), ((b * Hkv + h) * S + s) * D);
      }
    }
  }
  return tensor(out, { shape: [B, Hkv, S, D], dtype: p.dtype, backend });
}

/**
 * Appends tokens `[cache.lens[b], lens[b])` of the problem to the cache in random chunks of
 * at most `maxChunk` tokens, each sequence taking a random share of every chunk.
 */
export function fillCache(
  cache: KVCache,
  p: HostProblem,
  lens: readonly number[],
  rand: () => number,
  maxChunk: number,
  backend: Backend,
): void {
  while (cache.lens.some((n, b) => n < lens[b])) {
    const S = 1 + Math.floor(rand() * maxChunk);
    const from = [...cache.lens];
    const to = from.map((n, b) => Math.min(lens[b], n + Math.floor(rand() * (S + 1))));
    if (to.every((t, b) => t === from[b])) continue;
    const k = chunk(p, p.k, from, to, backend);
    const v = chunk(p, p.v, from, to, backend);
    cache.append(k, v, { lens: to.map((t, b) => t - from[b]) });
    k.dispose();
    v.dispose();
  }
}

/**
 * Fills every page of an empty cache with NaN through appends to random sequences, then
 * frees them in random order: afterwards each slot no token was written to holds NaN (an
 * attention that reads one poisons its row), and the free list is in a shuffled order.
 */
export function poison(cache: KVCache, rand: () => number, backend: Backend): void {
  const { batch: B, kvHeads: Hkv, headDim: D, pageSize } = cache;
  while (cache.freePages > 0) {
    const b = Math.floor(rand() * B);
    const n = Math.min(cache.freePages, 1 + Math.floor(rand() * 3)) * pageSize;
    const nan = full([B, Hkv, n, D], NaN, { dtype: cache.dtype, backend });
    cache.append(nan, nan, { lens: Array.from({ length: B }, (_, i) => (i === b ? n : 0)) });
    nan.dispose();
  }
  const order = [...Array(B).keys()].sort(() => rand() - 0.5);
  for (const b of order) cache.free(b);
}
