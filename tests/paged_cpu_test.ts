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
import type { Backend, TensorInfo } from "../backends/backend.ts";
import { tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import { E4M3_VALUES } from "../tensor/float8.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { rng } from "./_paged.ts";

const backend: Backend = cpu();
const info = (t: Tensor): TensorInfo => ({ id: t.id, shape: t.shape, dtype: t.dtype });

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
