/**
 * Test helpers for paged K/V at the backend level (before and beside the public `pagedKV`):
 * cut contiguous host K/V into pages in a random order, with every page and slot that holds
 * no token full of NaN (a kernel that reads one poisons its row), and turn a contiguous plan
 * into the equivalent paged plan (same schedule, so the same bits).
 */
import type { Backend, DataId, PagedKVInfo, TensorInfo } from "../backends/backend.ts";
import type { AttentionPlan, AttentionRun, PagedLayout } from "../schedule/attention_plan.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";

/** Uniform-sum values in [−3, 3) (roughly normal), seeded. */
export function randomArray(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() + r() + r() - 1.5) * 2);
}

/** The backend-level description of a tensor. */
export const infoOf = (t: Tensor): TensorInfo => ({ id: t.id, shape: t.shape, dtype: t.dtype });

/** Host pages: page buffers' values, the block table and the layout. */
export interface HostPages {
  /** Per page buffer, its K values `[Pc, Hkv, pageSize, D]`. */
  k: Float32Array[];
  v: Float32Array[];
  blockTable: Int32Array;
  layout: PagedLayout;
}

/** A small seeded generator (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Pages holding contiguous `k`, `v` `[B, Hkv, N, D]` for lengths `kvLens`: each sequence's
 * `ceil(len / pageSize)` pages drawn from a random permutation of all pages (with `spare`
 * unused ones), split over `buffers` page buffers. Unused pages and slots past a length are NaN.
 */
export function paginate(
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  shape: readonly number[],
  kvLens: readonly number[],
  pageSize: number,
  opts: { seed: number; spare?: number; buffers?: number },
): HostPages {
  const [B, Hkv, N, D] = shape;
  const rand = rng(opts.seed);
  const maxBlocks = Math.max(1, Math.ceil(N / pageSize));
  const used = kvLens.reduce((a, n) => a + Math.ceil(n / pageSize), 0);
  const P = used + (opts.spare ?? 2);
  const perm = [...Array(P).keys()];
  for (let i = P - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const buffers = Math.min(opts.buffers ?? 1, P);
  const pagesPerBuffer = Math.ceil(P / buffers);
  const nbuf = Math.ceil(P / pagesPerBuffer);
  const pageElems = Hkv * pageSize * D;
  const kb: Float32Array[] = [];
  const vb: Float32Array[] = [];
  for (let c = 0; c < nbuf; c++) {
    const pc = Math.min(pagesPerBuffer, P - c * pagesPerBuffer);
    kb.push(new Float32Array(pc * pageElems).fill(NaN));
    vb.push(new Float32Array(pc * pageElems).fill(NaN));
  }
  const blockTable = new Int32Array(B * maxBlocks).fill(-1);
  let next = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t * pageSize < kvLens[b]; t++) {
      const page = perm[next++];
      blockTable[b * maxBlocks + t] = page;
      const c = Math.floor(page / pagesPerBuffer);
      const local = page - c * pagesPerBuffer;
      for (let h = 0; h < Hkv; h++) {
        for (let s = 0; s < pageSize && t * pageSize + s < kvLens[b]; s++) {
          const src = ((b * Hkv + h) * N + t * pageSize + s) * D;
          const dst = ((local * Hkv + h) * pageSize + s) * D;
          for (let d = 0; d < D; d++) {
            kb[c][dst + d] = k[src + d];
            vb[c][dst + d] = v[src + d];
          }
        }
      }
    }
  }
  return {
    k: kb,
    v: vb,
    blockTable,
    layout: { pageSize, maxBlocks, pagesPerBuffer, buffers: nbuf, pages: P },
  };
}

/** Host pages on a backend: page tensors and the device block table (free with `dispose`). */
export function uploadPages(
  backend: Backend,
  hp: HostPages,
  shape: readonly number[],
  dtype: DType,
): { pages: PagedKVInfo; dispose: () => void } {
  const [, Hkv, , D] = shape;
  const { pageSize } = hp.layout;
  const mk = (x: Float32Array): Tensor =>
    tensor(x, { shape: [x.length / (Hkv * pageSize * D), Hkv, pageSize, D], dtype, backend });
  const kt = hp.k.map(mk);
  const vt = hp.v.map(mk);
  const bt: DataId = backend.createIndexTable!(hp.blockTable);
  const inf = (t: Tensor) => ({ id: t.id, shape: t.shape, dtype: t.dtype });
  return {
    pages: { kPages: kt.map(inf), vPages: vt.map(inf), blockTable: bt },
    dispose: () => {
      for (const t of [...kt, ...vt]) t.dispose();
      backend.release(bt);
    },
  };
}

/**
 * The paged twin of a contiguous single-run plan: same schedule and runs, K/V read through
 * `layout` (prepared again by the backend for its paged kernels).
 */
export function pagedPlan(
  backend: Backend,
  plan: AttentionPlan,
  layout: PagedLayout,
): AttentionPlan {
  if (plan.runs.length !== 1 || plan.parts) throw new Error("pagedPlan: needs a whole-K/V plan");
  const [B, Hkv, , D] = plan.kvShape;
  const run: AttentionRun = { ...plan.runs[0], paged: layout, prepared: undefined };
  const paged: AttentionPlan = {
    ...plan,
    kvShape: [B, Hkv, layout.maxBlocks * layout.pageSize, D],
    paged: layout,
    runs: [run],
  };
  if (backend.prepareAttention) run.prepared = backend.prepareAttention(paged, run);
  return paged;
}
