/**
 * Paged rows of the benchmark (`--algos lean-paged16,lean-paged256`): lean over a KV cache
 * (`la.kvCache`) of that page size holding the case's K/V, beside contiguous lean on the
 * same values.
 *
 * The cache is filled by appends of chunks of C tokens ({@link chunkKeys}), each chunk tiled from the start of the same randn block as the
 * contiguous K/V (bench/_inputs.ts), so the float64 check reads them as K/V in parts of
 * these chunks ({@link chunkRanges}). For the sweep's lengths (powers of two ≥ 1k) token j
 * of every (batch, head) is block row `j mod C`, exactly what the contiguous K/V hold (N ≤ C
 * is one chunk, the whole K/V; larger N are multiples of C): where contiguous lean runs the
 * same schedule the outputs are bit-identical (the row's note says whether they were).
 *
 * @module
 */
import type { Case } from "./_sweep.ts";
import { allocStorage, type Inputs } from "./_inputs.ts";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { bytesPerElement } from "../tensor/dtype.ts";
import { type KVCache, kvCache, leanAttention } from "../mod.ts";
import type { Call } from "./_timing.ts";

import { PAGED_ALGOS } from "./_sweep.ts";

export { PAGED_ALGOS };
/** A paged row's algo. */
export type PagedAlgo = typeof PAGED_ALGOS[number];

/** Whether `a` is a paged row's algo. */
export function isPaged(a: string): a is PagedAlgo {
  return (PAGED_ALGOS as readonly string[]).includes(a);
}

/** The page size of a paged row. */
export function pageSizeOf(algo: PagedAlgo): number {
  return algo === "lean-paged16" ? 16 : 256;
}

/** Bytes of K and V a cache of `pageSize` holds for the case: its pages in use. */
export function pagedBytes(c: Case, pageSize: number): number {
  const lens = c.kvLens ?? Array(c.B).fill(c.N);
  const pages = lens.reduce((a: number, n: number) => a + Math.ceil(n / pageSize), 0);
  return 2 * pages * pageSize * c.Hkv * c.D * bytesPerElement(c.dtype);
}

/** Bytes of K and V the contiguous tensors hold (ragged batches padded to N). */
export function contiguousBytes(c: Case): number {
  return 2 * c.B * c.Hkv * c.N * c.D * bytesPerElement(c.dtype);
}

/**
 * Keys of one appended chunk `[B, Hkv, C, D]` (see the module notes): the whole length where
 * that fits one binding; else the most whole block periods (`blockElems / D` keys) that fit,
 * or, where not even one does (tiny test bindings), the most keys that fit.
 */
export function chunkKeys(c: Case, inputs: Inputs, partBytes: number): number {
  const perKey = c.B * c.Hkv * c.D * bytesPerElement(c.dtype);
  const fit = Math.floor(partBytes / perKey);
  if (fit >= c.N) return c.N;
  const period = inputs.blockElems / c.D;
  return fit >= period ? Math.floor(fit / period) * period : Math.max(1, fit);
}

/**
 * The keys `[n0, n0 + C)` of the appended chunks: each chunk's K/V are tiled from the
 * block's start, as `referenceRow` reads a part of these ranges.
 */
export function chunkRanges(c: Case, inputs: Inputs, partBytes: number): [number, number][] {
  const C = chunkKeys(c, inputs, partBytes);
  const out: [number, number][] = [];
  // Whole chunks, the last one too: its C keys' layout holds however few of them are used.
  for (let n0 = 0; n0 < c.N; n0 += C) out.push([n0, n0 + C]);
  return out;
}

/** A filled cache for the case and the timed call over it. */
export interface PagedRun {
  cache: KVCache;
  call: Call;
  /** Bytes of K and V the cache's pages in use hold. */
  storedBytes: number;
  /** What the row's note says of the cache. */
  note: string;
}

/**
 * A cache of the row's page size holding the case's K/V (see the module notes), and lean over
 * it. The caller disposes `cache`.
 */
export function pagedRun(
  algo: PagedAlgo,
  gpu: WebGpuBackend,
  inputs: Inputs,
  c: Case,
  q: Tensor,
): PagedRun {
  const pageSize = pageSizeOf(algo);
  const lens = c.kvLens ?? Array(c.B).fill(c.N);
  const capacity = lens.reduce((a: number, n: number) => a + Math.ceil(n / pageSize), 0) *
    pageSize;
  const cache = kvCache({
    batch: c.B,
    kvHeads: c.Hkv,
    headDim: c.D,
    pageSize,
    capacity,
    dtype: c.dtype,
    backend: gpu,
  });
  try {
    const C = chunkKeys(c, inputs, gpu.partBytes);
    const chunk = (): Tensor => allocStorage(gpu, [c.B, c.Hkv, C, c.D], c.dtype);
    const kc = chunk(), vc = chunk();
    try {
      inputs.fill(c, "k", kc);
      inputs.fill(c, "v", vc);
      for (let n0 = 0; n0 < c.N; n0 += C) {
        const take = lens.map((n: number) => Math.max(0, Math.min(C, n - n0)));
        if (take.every((t: number) => t === 0)) break;
        cache.append(kc, vc, { lens: take });
      }
    } finally {
      kc.dispose();
      vc.dispose();
    }
  } catch (e) {
    cache.dispose();
    throw e;
  }
  return {
    cache,
    call: (qq = q) => leanAttention(qq, cache),
    storedBytes: pagedBytes(c, pageSize),
    note: `${cache.pages} pages of ${pageSize} tokens in ${
      Math.ceil(cache.pages / cache.pagesPerBuffer)
    } page buffer(s) each for K and V`,
  };
}
