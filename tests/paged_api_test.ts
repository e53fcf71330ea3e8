/**
 * Attention over the public paged K/V types — `pagedKV` (pages in a random permutation across
 * page buffers, unused pages and slots NaN) and `kvCache` (filled by random append chunks
 * with ragged shares) — on every backend, page sizes {1, 3, 16, 64, 256}, float32 and float16,
 * naive, flash (1, 3 and "auto" splits) and lean (explicit and default grid):
 *
 * - every result equals the float64 reference within the dtype/length tolerance;
 * - flash and lean equal the contiguous call with the same options bit for bit: the schedule
 *   depends only on the lengths and the knobs (tile, splits, grid), which are the same, and the
 *   kernels read the same values through the block table. (Naive is compared with the
 *   reference only: it gathers K/V to `maxBlocks · pageSize` keys, a different matmul size.)
 * - the variants (window, soft-cap, sinks, ALiBi, bias) go through pages unchanged;
 * - a fast-check property (seed printed) over random shapes, GQA groups, causal prefill, tile,
 *   split and grid sizes and page buffers: flash and lean over pages = contiguous, bit for bit.
 *
 * The cache cases first fill every page with NaN and free it (`poison`), so slots no append
 * wrote hold NaN and the pages come off the free list in a shuffled order.
 */
import { ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { tensor } from "../tensor/creation.ts";
import type { ComputeDType } from "../tensor/dtype.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { naiveAttention } from "../attention/naive.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { type KVCache, kvCache } from "../attention/kv_cache.ts";
import { type PagedKV, pagedKV } from "../attention/paged_kv.ts";
import fc from "npm:fast-check@4.10.2";
import { describeBackends, numRuns } from "./_backends.ts";
import { paginate } from "./_paged.ts";
import {
  checkReference,
  type Dims,
  fillCache,
  type HostProblem,
  hostProblem,
  poison,
  rng,
  sameBits,
  upload,
} from "./_paged_api.ts";

const PAGE_SIZES = [1, 3, 16, 64, 256];
const DTYPES: ComputeDType[] = ["float32", "float16"];

// deno-lint-ignore no-explicit-any
type AttentionFn = (...args: any[]) => Tensor;

/** The algorithms and knobs every case runs; `bits`: compared bitwise with the contiguous call. */
const ALGOS: { name: string; f: AttentionFn; opts: object; bits: boolean }[] = [
  { name: "naive", f: naiveAttention, opts: {}, bits: false },
  { name: "flash", f: flashAttention, opts: { blockN: 16 }, bits: true },
  { name: "flash-decoding 3", f: flashAttention, opts: { blockN: 16, numSplits: 3 }, bits: true },
  { name: "flash auto", f: flashAttention, opts: { numSplits: "auto" }, bits: true },
  { name: "lean grid 5", f: leanAttention, opts: { tileSize: 16, grid: 5 }, bits: true },
  { name: "lean default", f: leanAttention, opts: {}, bits: true },
];

/** Ragged lengths in [0, N], one of them 0 and one a multiple of the page size where it fits. */
function raggedLens(B: number, N: number, pageSize: number, rand: () => number): number[] {
  const lens = Array.from({ length: B }, () => Math.floor(rand() * (N + 1)));
  lens[0] = N;
  if (B > 1) lens[1] = Math.min(N, pageSize * Math.max(1, Math.floor(N / pageSize / 2)));
  if (B > 2) lens[2] = 0;
  return lens;
}

/** The pages of a problem as a PagedKV (random page order, NaN elsewhere, `buffers` buffers). */
function pagedOf(
  p: HostProblem,
  lens: number[],
  pageSize: number,
  seed: number,
  buffers: number,
  backend: Backend,
): { kv: PagedKV; free: () => void } {
  const hp = paginate(p.k, p.v, [p.B, p.Hkv, p.N, p.D], lens, pageSize, {
    seed,
    spare: 3,
    buffers,
  });
  const mk = (x: Float32Array) =>
    tensor(x, {
      shape: [x.length / (p.Hkv * pageSize * p.D), p.Hkv, pageSize, p.D],
      dtype: p.dtype,
      backend,
    });
  const kPages = hp.k.map(mk);
  const vPages = hp.v.map(mk);
  // Alternate the two block-table forms: nested arrays and a flat Int32Array with its shape.
  const { maxBlocks } = hp.layout;
  const blockTable = seed % 2 === 0
    ? { blockTable: hp.blockTable, blockTableShape: [p.B, maxBlocks] as [number, number] }
    : {
      blockTable: lens.map((n, b) =>
        Array.from(hp.blockTable.subarray(b * maxBlocks, b * maxBlocks + Math.ceil(n / pageSize)))
      ),
    };
  const kv = pagedKV({
    kPages: kPages.length === 1 && seed % 3 === 0 ? kPages[0] : kPages,
    vPages: vPages.length === 1 && seed % 3 === 0 ? vPages[0] : vPages,
    ...blockTable,
    kvLens: lens,
  });
  return {
    kv,
    free: () => {
      kv.dispose();
      for (const t of [...kPages, ...vPages]) t.dispose();
    },
  };
}

/** Runs every algorithm over `kv` and checks reference and (where stated) contiguous bits. */
async function checkAll(
  p: HostProblem,
  lens: number[],
  kv: PagedKV | KVCache,
  backend: Backend,
  what: string,
  variant: Record<string, unknown> = {},
  refExtra: Record<string, unknown> = {},
): Promise<void> {
  const { q, k, v } = upload(p, backend);
  try {
    for (const a of ALGOS) {
      const paged = a.f(q, kv, { ...a.opts, ...variant });
      const got = await paged.data();
      paged.dispose();
      checkReference(got, p, lens, `${what} ${a.name}`, { ...variant, ...refExtra });
      if (!a.bits) continue;
      const flat = a.f(q, k, v, { ...a.opts, ...variant, kvLens: lens });
      sameBits(got, await flat.data(), `${what} ${a.name} vs contiguous`);
      flat.dispose();
    }
  } finally {
    q.dispose();
    k.dispose();
    v.dispose();
  }
}

const BASE_SEED = Number(Deno.env.get("PAGED_SEED") ?? Date.now() % 100000);
console.log(`paged_api_test seed ${BASE_SEED} (replay: PAGED_SEED=${BASE_SEED})`);

/** Sizes: lavapipe (a software GPU) gets a smaller problem. */
function dimsFor(backend: Backend): Dims {
  return backend.name === "cpu"
    ? { B: 4, Hq: 4, Hkv: 2, Sq: 1, N: 300, D: 16 }
    : { B: 3, Hq: 4, Hkv: 2, Sq: 1, N: 70, D: 8 };
}

describeBackends(
  "pagedKV: attention over permuted NaN-padded pages = reference, = contiguous bits",
  async (backend) => {
    let i = 0;
    for (const pageSize of PAGE_SIZES) {
      for (const dtype of DTYPES) {
        const seed = BASE_SEED + i++;
        const dims = dimsFor(backend);
        const p = hostProblem(seed, dims, dtype);
        const lens = raggedLens(dims.B, dims.N, pageSize, rng(seed));
        const buffers = 1 + (seed % 3);
        const { kv, free } = pagedOf(p, lens, pageSize, seed, buffers, backend);
        try {
          await checkAll(p, lens, kv, backend, `seed ${seed} pageSize ${pageSize} ${dtype}`);
        } finally {
          free();
        }
      }
    }
  },
);

describeBackends(
  "kvCache: random append chunks, ragged; attention = reference, = contiguous bits",
  async (backend) => {
    let i = 100;
    for (const pageSize of PAGE_SIZES) {
      for (const dtype of DTYPES) {
        const seed = BASE_SEED + i++;
        const dims = dimsFor(backend);
        const p = hostProblem(seed, dims, dtype);
        const rand = rng(seed);
        const lens = raggedLens(dims.B, dims.N, pageSize, rand);
        const pages = lens.reduce((a, n) => a + Math.ceil(n / pageSize), 0) + 2;
        const cache = kvCache({
          batch: dims.B,
          kvHeads: dims.Hkv,
          headDim: dims.D,
          pageSize,
          capacity: pages * pageSize,
          dtype,
          backend,
          // Several page buffers, so appends and reads cross them.
          pagesPerBuffer: Math.max(1, Math.ceil(pages / 3)),
        });
        try {
          poison(cache, rand, backend);
          fillCache(cache, p, lens, rand, Math.max(2, 2 * pageSize), backend);
          assert(cache.lens.every((n, b) => n === lens[b]), `lens ${cache.lens} vs ${lens}`);
          await checkAll(
            p,
            lens,
            cache,
            backend,
            `seed ${seed} cache pageSize ${pageSize} ${dtype}`,
          );
        } finally {
          cache.dispose();
        }
      }
    }
  },
);

describeBackends(
  "kvCache: variants (window, soft-cap, sinks, ALiBi, bias) and causal prefill over pages",
  async (backend) => {
    const seed = BASE_SEED + 200;
    const base = dimsFor(backend);
    const pageSize = 16;
    const N = Math.ceil(base.N / pageSize) * pageSize; // the cache's key axis: whole pages
    const dims = { ...base, N, Sq: 3 };
    const p = hostProblem(seed, dims, "float32");
    const rand = rng(seed);
    const lens = Array.from(
      { length: dims.B },
      (_, b) => b === 0 ? N : 3 + Math.floor(rand() * (N - 3)),
    );
    const cache = kvCache({
      batch: dims.B,
      kvHeads: dims.Hkv,
      headDim: dims.D,
      pageSize,
      capacity: 4 * N,
      backend,
    });
    const bias = Float32Array.from({ length: N }, () => rand() - 0.5);
    const biasT = tensor(bias, { shape: [1, 1, 1, N], backend });
    try {
      poison(cache, rand, backend);
      fillCache(cache, p, lens, rand, 40, backend);
      const sinks = Array.from({ length: dims.Hq }, () => rand());
      const slopes = Array.from({ length: dims.Hq }, () => rand() * 0.1);
      const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
        ["window", { window: { left: 20, right: 0 } }, {}],
        ["softcap", { softcap: 2 }, {}],
        ["sinks", { sinks }, {}],
        ["alibi", { alibiSlopes: slopes }, {}],
        ["bias", { bias: biasT }, { bias: { values: bias, shape: [1, 1, 1, N] } }],
        ["causal", { causal: true }, {}],
      ];
      for (const [name, opts, ref] of cases) {
        const refOpts = { ...opts, ...ref };
        await checkAll(p, lens, cache, backend, `seed ${seed} ${name}`, opts, refOpts);
      }
    } finally {
      biasT.dispose();
      cache.dispose();
    }
  },
);

describeBackends(
  "pagedKV property: random shapes, GQA, causal prefill, knobs; bits = contiguous",
  async (backend) => {
    const small = backend.name !== "cpu";
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          seed: fc.integer({ min: 0, max: 2 ** 30 }),
          pageSize: fc.constantFrom(...PAGE_SIZES),
          B: fc.integer({ min: 1, max: 4 }),
          Hkv: fc.integer({ min: 1, max: 3 }),
          group: fc.integer({ min: 1, max: 3 }),
          Sq: fc.integer({ min: 1, max: 4 }),
          N: fc.integer({ min: 1, max: small ? 60 : 400 }),
          D: fc.constantFrom(4, 8, 16),
          causal: fc.boolean(),
          dtype: fc.constantFrom(...DTYPES),
          buffers: fc.integer({ min: 1, max: 3 }),
          tile: fc.integer({ min: 1, max: 64 }),
          splits: fc.integer({ min: 1, max: 4 }),
          grid: fc.integer({ min: 1, max: 16 }),
        }),
        async (c) => {
          const dims = { B: c.B, Hq: c.Hkv * c.group, Hkv: c.Hkv, Sq: c.Sq, N: c.N, D: c.D };
          const p = hostProblem(c.seed, dims, c.dtype);
          const rand = rng(c.seed);
          const lens = Array.from({ length: c.B }, () => Math.floor(rand() * (c.N + 1)));
          const { kv, free } = pagedOf(p, lens, c.pageSize, c.seed, c.buffers, backend);
          const { q, k, v } = upload(p, backend);
          try {
            const runs: [AttentionFn, object][] = [
              [flashAttention, { blockN: c.tile, numSplits: c.splits, causal: c.causal }],
              [leanAttention, { tileSize: c.tile, grid: c.grid, causal: c.causal }],
            ];
            for (const [f, o] of runs) {
              const paged = f(q, kv, o);
              const got = await paged.data();
              const flat = f(q, k, v, { ...o, kvLens: lens });
              sameBits(got, await flat.data(), `${f.name} ${JSON.stringify(c)}`);
              checkReference(got, p, lens, `${f.name} ${JSON.stringify(c)}`, { causal: c.causal });
              paged.dispose();
              flat.dispose();
            }
          } finally {
            for (const t of [q, k, v]) t.dispose();
            free();
          }
        },
      ),
      { numRuns: numRuns(backend, 40), seed: BASE_SEED },
    );
  },
);
