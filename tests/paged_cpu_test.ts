/**
 * Paged K/V on the CPU backend: its primitives (`createIndexTable`, `gatherPageRows`,
 * `scatterPageRows`) against a host model in every storage dtype, and attention over pages
 * (block table, pages in random order across page buffers, unused pages and slots NaN) equal
 * bit for bit to attention over the contiguous K/V under the same schedule, on both tile
 * kernels and the worker pool. Nothing is left behind: `memory()` returns to its start.
 */
import { deepStrictEqual, ok as assert, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import type { Backend } from "../backends/backend.ts";
import { tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { E4M3_VALUES } from "../tensor/float8.ts";
import { infoOf, pagedPlan, paginate, rng, uploadPages } from "./_paged.ts";
import { flashAttentionPlan } from "../attention/flash.ts";
import { leanAttentionPlan } from "../attention/lean.ts";
import type { AttentionInputs } from "../backends/backend.ts";
import { disableSimdKernelsForTesting } from "../backends/cpu/_attention_simd.ts";
import { setWasmBacking } from "../backends/cpu/_storage.ts";
import { closeAttentionWorkers, cpuAttentionParallel } from "../backends/cpu/_attention_worker.ts";
import type { AttentionPlan } from "../schedule/attention_plan.ts";
import { settleGarbage } from "./_backends.ts";

const backend: Backend = cpu();
const info = infoOf;

/** Bitwise equality of two float arrays (NaN equals NaN, −0 differs from +0). */
function sameBits(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  strictEqual(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    assert(Object.is(got[i], want[i]), `${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

/** `n` values a tensor of `dtype` holds exactly (NaN included where the dtype has one). */
function valuesOf(dtype: DType, n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => {
    if (dtype === "int8") return Math.round(r() * 254 - 127);
    if (dtype === "float8e4m3") return E4M3_VALUES[Math.floor(r() * 256)];
    return r() < 0.05 ? NaN : Math.fround(r() * 8 - 4);
  });
}

const DTYPES: DType[] = ["float32", "float16", "int8", "float8e4m3"];

Deno.test("cpu paged: createIndexTable copies the table, counts it in memory(), release frees it", async () => {
  await settleGarbage();
  const before = backend.memory();
  const src = Int32Array.of(3, -1, 7, 0, 2);
  const id = backend.createIndexTable!(src);
  src[0] = 99; // a copy: later changes to the caller's array do not reach the table
  deepStrictEqual([...await backend.read(id, "float32", 5)], [3, -1, 7, 0, 2]);
  strictEqual(backend.memory().liveBytes, before.liveBytes + 20);
  strictEqual(backend.memory().liveCount, before.liveCount + 1);
  backend.release(id);
  deepStrictEqual(backend.memory(), before);
});

Deno.test("cpu paged: gather/scatter page rows match a host model in every dtype", async () => {
  const seed = Date.now() % 1_000_000;
  console.log(`  fast-check seed ${seed}`);
  const before = backend.memory();
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        dtype: fc.constantFrom(...DTYPES),
        P: fc.integer({ min: 1, max: 5 }),
        H: fc.integer({ min: 1, max: 3 }),
        pageSize: fc.constantFrom(1, 3, 4),
        D: fc.integer({ min: 1, max: 9 }),
        B: fc.integer({ min: 1, max: 3 }),
        n: fc.integer({ min: 0, max: 4 }),
        seed: fc.integer({ min: 0, max: 1_000_000 }),
      }),
      async ({ dtype, P, H, pageSize, D, B, n, seed }) => {
        const r = rng(seed);
        const rowsTotal = P * pageSize;
        // Distinct rows (scatter's contract), about a fifth of them negative (skipped).
        const perm = [...Array(rowsTotal).keys()].sort(() => r() - 0.5);
        const rows = Int32Array.from(
          { length: B * n },
          (_, i) => i < rowsTotal && r() > 0.2 ? perm[i] : -1 - Math.floor(r() * 3),
        );
        const pages = tensor(valuesOf(dtype, P * H * pageSize * D, seed), {
          shape: [P, H, pageSize, D],
          dtype,
          backend,
        });
        const src = tensor(valuesOf(dtype, B * H * n * D, seed + 1), {
          shape: [B, H, n, D],
          dtype,
          backend,
        });
        const pv = await pages.data();
        const sv = await src.data();
        const at = (row: number, h: number) =>
          ((Math.floor(row / pageSize) * H + h) * pageSize + (row % pageSize)) * D;
        const wantGather = new Float32Array(B * H * n * D);
        const wantPages = Float32Array.from(pv);
        for (let b = 0; b < B; b++) {
          for (let t = 0; t < n; t++) {
            const row = rows[b * n + t];
            if (row < 0) continue;
            for (let h = 0; h < H; h++) {
              const o = ((b * H + h) * n + t) * D;
              wantGather.set(pv.subarray(at(row, h), at(row, h) + D), o);
              wantPages.set(sv.subarray(o, o + D), at(row, h));
            }
          }
        }
        const g = backend.gatherPageRows!(info(pages), rows, B, n);
        sameBits(await backend.read(g, dtype, B * H * n * D), wantGather, `gather ${dtype}`);
        backend.release(g);
        backend.scatterPageRows!(info(pages), info(src), rows);
        sameBits(await pages.data(), wantPages, `scatter ${dtype}`);
        sameBits(await src.data(), sv, `scatter leaves src ${dtype}`);
        pages.dispose();
        src.dispose();
      },
    ),
    { seed, numRuns: 150 },
  );
  deepStrictEqual(backend.memory(), before);
});

/** One attention problem over pages (sizes, lengths, layout, schedule, kernel). */
const pagedCase = fc.record({
  B: fc.integer({ min: 1, max: 3 }),
  Hkv: fc.integer({ min: 1, max: 2 }),
  group: fc.integer({ min: 1, max: 3 }),
  Sq: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 5 })),
  N: fc.integer({ min: 1, max: 300 }),
  D: fc.constantFrom(4, 8, 16, 20, 33),
  // Per sequence, as a fraction of N (0 and N included).
  lens: fc.array(fc.oneof(fc.constantFrom(0, 1), fc.double({ min: 0, max: 1, noNaN: true })), {
    minLength: 3,
    maxLength: 3,
  }),
  causal: fc.boolean(),
  dtype: fc.constantFrom("float32" as const, "float16" as const),
  pageSize: fc.constantFrom(1, 3, 16, 64, 256),
  buffers: fc.integer({ min: 1, max: 3 }),
  spare: fc.integer({ min: 1, max: 3 }), // at least one page, even when every length is 0
  algo: fc.constantFrom("lean" as const, "flash" as const, "flash-decoding" as const),
  tile: fc.constantFrom(3, 16, 64),
  split: fc.integer({ min: 1, max: 7 }),
  scalar: fc.boolean(), // the plain-JS tile (no WebAssembly) instead of the SIMD one
  pool: fc.boolean(), // also through the worker pool
  // The page buffers in shared WebAssembly memory (tiles staged by memory.copy) from 1 KiB on.
  wasmPages: fc.boolean(),
  seed: fc.integer({ min: 0, max: 1_000_000 }),
});

type PagedCase = typeof pagedCase extends fc.Arbitrary<infer T> ? T : never;

/** Variant options and their backend inputs, built on `backend` (dispose with `dispose`). */
type VariantOf = (
  Hq: number,
  N: number,
) => { opts: Record<string, unknown>; inputs: AttentionInputs; dispose: () => void };

const bits = (id: unknown, dtype: DType, n: number) => backend.read(id as never, dtype, n);

/**
 * Runs `c` contiguously and over pages with the same schedule, and asserts the two give the
 * same bits (out and lse); the worker pool too when `c.pool`.
 */
async function checkPaged(c: PagedCase, variant?: VariantOf): Promise<void> {
  const { B, Hkv, Sq, D, dtype } = c;
  const N = c.causal ? Math.max(c.N, Sq) : c.N; // a causal prefill holds its Sq queries
  const Hq = Hkv * c.group;
  const r = rng(c.seed);
  const gauss = (n: number) => Float32Array.from({ length: n }, () => (r() + r() + r() - 1.5) * 2);
  const q = tensor(gauss(B * Hq * Sq * D), { shape: [B, Hq, Sq, D], dtype, backend });
  const k = tensor(gauss(B * Hkv * N * D), { shape: [B, Hkv, N, D], dtype, backend });
  const v = tensor(gauss(B * Hkv * N * D), { shape: [B, Hkv, N, D], dtype, backend });
  const kvLens = c.lens.slice(0, B).map((f) => Math.round(f * N));
  // A causal prefill needs every sequence to hold its Sq queries.
  if (c.causal) { for (let b = 0; b < B; b++) kvLens[b] = Math.max(kvLens[b], Sq); }
  const hp = paginate(await k.data(), await v.data(), k.shape, kvLens, c.pageSize, {
    seed: c.seed,
    spare: c.spare,
    buffers: c.buffers,
  });
  if (c.wasmPages) setWasmBacking(true, 1024);
  let up;
  try {
    up = uploadPages(backend, hp, k.shape, dtype);
  } finally {
    setWasmBacking(true);
  }
  const vr = variant?.(Hq, N);
  const opts = { ...vr?.opts, kvLens, causal: c.causal };
  const what = JSON.stringify({ ...c, kvLens, variant: Object.keys(vr?.opts ?? {}) });
  try {
    const plan: AttentionPlan = c.algo === "lean"
      ? leanAttentionPlan(q, k, v, { ...opts, tileSize: c.tile, grid: c.split })
      : flashAttentionPlan(q, k, v, {
        ...opts,
        blockN: c.tile,
        numSplits: c.algo === "flash" ? 1 : c.split,
      });
    const paged = pagedPlan(backend, plan, hp.layout);
    const pagedInputs = { ...vr?.inputs, pages: up.pages };
    const [qi, ki, vi] = [info(q), info(k), info(v)];
    const rows = B * Hq * Sq;
    disableSimdKernelsForTesting(c.scalar);
    let want, got;
    try {
      want = backend.attention(qi, ki, vi, plan, vr?.inputs);
      got = backend.attention(qi, up.pages.kPages[0], up.pages.vPages[0], paged, pagedInputs);
    } finally {
      disableSimdKernelsForTesting(false);
    }
    const wantOut = await bits(want.out, dtype, rows * D);
    const wantLse = await bits(want.lse, "float32", rows);
    sameBits(await bits(got.out, dtype, rows * D), wantOut, `out ${what}`);
    sameBits(await bits(got.lse, "float32", rows), wantLse, `lse ${what}`);
    for (const id of [want.out, want.lse, got.out, got.lse]) backend.release(id);
    if (c.pool && !c.scalar) {
      const par = await cpuAttentionParallel(
        qi,
        up.pages.kPages[0],
        up.pages.vPages[0],
        paged.runs[0],
        { threads: 3, inputs: pagedInputs },
      );
      sameBits(par.out, wantOut, `worker pool out ${what}`);
      sameBits(par.lse, wantLse, `worker pool lse ${what}`);
    }
  } finally {
    vr?.dispose();
    up.dispose();
    for (const t of [q, k, v]) t.dispose();
  }
}

Deno.test("cpu paged attention equals the contiguous call bit for bit (both tile kernels, worker pool)", async () => {
  const seed = Date.now() % 1_000_000;
  console.log(`  fast-check seed ${seed}`);
  await settleGarbage();
  const before = backend.memory();
  try {
    await fc.assert(fc.asyncProperty(pagedCase, (c) => checkPaged(c)), { seed, numRuns: 200 });
  } finally {
    closeAttentionWorkers();
  }
  strictEqual(backend.memory().liveBytes, before.liveBytes);
  strictEqual(backend.memory().liveCount, before.liveCount);
});

/** A case every variant below runs on: ragged, GQA, causal prefill, pages across buffers. */
const VARIANT_CASE: PagedCase = {
  B: 2,
  Hkv: 2,
  group: 2,
  Sq: 3,
  N: 70,
  D: 8,
  lens: [1, 0.6, 0],
  causal: true,
  dtype: "float32",
  pageSize: 16,
  buffers: 3,
  spare: 2,
  algo: "lean",
  tile: 16,
  split: 5,
  scalar: false,
  pool: true,
  wasmPages: true,
  seed: 7,
};

Deno.test("cpu paged attention equals the contiguous call bit for bit with each variant", async () => {
  await settleGarbage();
  const before = backend.memory();
  const t = (x: number[], shape?: number[]) => tensor(x, { shape, backend });
  const variants: [string, VariantOf][] = [
    ["window", () => ({ opts: { window: { left: 9, right: 0 } }, inputs: {}, dispose() {} })],
    ["softcap", () => ({ opts: { softcap: 3 }, inputs: {}, dispose() {} })],
    ["sinks", (Hq) => {
      const s = t(Array.from({ length: Hq }, (_, i) => i - 1.5));
      return { opts: { sinks: s }, inputs: { sinks: info(s) }, dispose: () => s.dispose() };
    }],
    ["alibi", (Hq) => {
      const s = t(Array.from({ length: Hq }, (_, i) => 0.1 * (i + 1)));
      return {
        opts: { alibiSlopes: s },
        inputs: { alibiSlopes: info(s) },
        dispose: () => s.dispose(),
      };
    }],
    ["bias", (Hq, N) => {
      const r = rng(3);
      const s = t(Array.from({ length: Hq * N }, () => r() * 4 - 2), [1, Hq, 1, N]);
      return { opts: { bias: s }, inputs: { bias: info(s) }, dispose: () => s.dispose() };
    }],
  ];
  try {
    for (const [name, variant] of variants) {
      for (const algo of ["lean", "flash-decoding"] as const) {
        for (const dtype of ["float32", "float16"] as const) {
          await checkPaged({ ...VARIANT_CASE, algo, dtype, split: 3 }, variant).catch((e) => {
            throw new Error(`${name}: ${e.message}`);
          });
        }
      }
    }
  } finally {
    closeAttentionWorkers();
  }
  strictEqual(backend.memory().liveBytes, before.liveBytes);
  strictEqual(backend.memory().liveCount, before.liveCount);
});
