/**
 * The shape-aware lean grid: `Backend.leanGrid` (the WebGPU backend's cost model of its
 * kernels, `leanGridFor`) and how `leanAttention` uses it.
 */
import { deepStrictEqual, ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { leanGridFor } from "../backends/webgpu/internal.ts";
import type { GpuContext } from "../backends/webgpu/context.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import type { Backend, LeanGridProblem } from "../backends/backend.ts";
import { defaultLeanGrid, leanAttention, leanAttentionSchedule } from "../attention/lean.ts";
import { flashAttention } from "../attention/flash.ts";
import { randn } from "../tensor/creation.ts";
import { maxAbsDiff } from "../testing/reference.ts";

const ctxOf = (description: string) =>
  ({ description, features: { f16: true } }) as unknown as GpuContext;
const H200 = ctxOf("NVIDIA H200");

function decode(B: number, Hq: number, Hkv: number, N: number): LeanGridProblem {
  return {
    plan: { batch: B, kvHeads: Hkv, kvLens: Array(B).fill(N), qBlocks: 1, tileSize: 64 },
    unitRows: Hq / Hkv,
    D: 128,
    kvDtype: "float16",
  };
}

Deno.test("leanGridFor: GPUs without a bandwidth entry keep the base grid", () => {
  for (const d of ["llvmpipe (LLVM 15.0.6, 256 bits)", "Some GPU", "NVIDIA A100-SXM4-80GB"]) {
    deepStrictEqual(leanGridFor(ctxOf(d), decode(16, 32, 8, 4096), 264), 264, d);
  }
});

Deno.test("leanGridFor on an H200: one pass where the units fill the GPU, stream-K at long N", () => {
  // (16,32,8) at 4k: 128 equal units on 132 SMs — one worker a unit, nothing cut.
  const short = decode(16, 32, 8, 4096);
  deepStrictEqual(leanGridFor(H200, short, 264), 128);
  // B = 1, 512k keys: 8 units cannot fill 132 SMs; stream-K over the largest multiple of the
  // units within the SMs for GQA (one resident a SM), 128: runs hold whole pieces of one unit
  // (measured faster than 132). MHA: 264, not 256, whose runs (8 a unit) start in step.
  deepStrictEqual(leanGridFor(H200, decode(1, 32, 8, 524288), 264), 128);
  deepStrictEqual(leanGridFor(H200, decode(4, 32, 8, 262144), 264), 128);
  deepStrictEqual(leanGridFor(H200, decode(1, 32, 32, 524288), 264), 264);
  // MHA at 4k: 256 workers (8 a unit) rather than 128 (measured 7 % faster).
  deepStrictEqual(leanGridFor(H200, decode(1, 32, 32, 4096), 264), 256);
  // A ragged MHA batch crosses units at any grid: not one worker a unit (512) but 2 × SMs.
  const ragged = decode(16, 32, 32, 1024);
  ragged.plan.kvLens = [65536, ...Array(15).fill(1024)];
  deepStrictEqual(leanGridFor(H200, ragged, 264), 264);
  // MHA with 32 units at 16k: 256 workers (8 a unit, runs end on unit boundaries).
  deepStrictEqual(leanGridFor(H200, decode(1, 32, 32, 16384), 264), 256);
  // GQA (one resident worker a SM): one wave of 128 (16 a unit, no worker spans two units)
  // rather than two waves of 132.
  deepStrictEqual(leanGridFor(H200, decode(1, 32, 8, 4096), 264), 128);
});

Deno.test("leanGridFor: one-row runs of cut units that start in step take the base grid", () => {
  const H100 = ctxOf("NVIDIA H100 80GB HBM3");
  const grid = (B: number, H: number, N: number) => leanGridFor(H100, decode(B, H, H, N), 264);
  // 256 workers, 2–8 a unit, give runs of 2 MiB of K (8k keys) or more, all starting in step:
  // where K and V lie made them up to 9 % slower (session (22)); 264 cross units at other offsets.
  const inStep = [[1, 32, 65536], [1, 64, 32768], [2, 32, 65536], [2, 64, 32768], [4, 32, 16384]];
  for (const [B, H, N] of [...inStep, [1, 32, 524288], [4, 32, 262144]]) {
    deepStrictEqual(grid(B, H, N), 264, `(${B},${H},${H}) ${N}`);
  }
  // Runs of 512 KiB and 1 MiB (16k and 32k keys on 256 workers): 256 stays.
  deepStrictEqual(grid(1, 32, 16384), 256);
  deepStrictEqual(grid(1, 32, 32768), 256);
  // A whole unit a worker in step was steady and faster than 264: the units' multiple stays.
  deepStrictEqual(grid(8, 32, 16384), 256);
  deepStrictEqual(grid(16, 32, 8192), 512);
  // GQA runs in step were steady: 128 stays.
  deepStrictEqual(leanGridFor(H100, decode(4, 32, 8, 65536), 264), 128);
});

Deno.test("leanGridFor counts quantized K/V at their stored bytes", () => {
  const H100 = ctxOf("NVIDIA H100 80GB HBM3");
  const grid = (B: number, H: number, N: number, kvDtype: LeanGridProblem["kvDtype"]) =>
    leanGridFor(H100, { ...decode(B, H, H, N), kvDtype }, 264);
  // On 256 workers these runs are 2 MiB of float16 K, in step (264 kept), but 1 MiB of int8 or
  // e4m3, not in step: 256, measured 2.4–3.0 % faster than 264 for both (H100, bench/NOTES.md
  // session (24)). Counted at 4 bytes (before), they looked in step and stayed on 264.
  for (const [B, H, N] of [[1, 32, 65536], [4, 32, 16384]]) {
    deepStrictEqual(grid(B, H, N, "float16"), 264, `(${B},${H},${H}) ${N} float16`);
    for (const fmt of ["int8", "float8e4m3"] as const) {
      deepStrictEqual(grid(B, H, N, fmt), 256, `(${B},${H},${H}) ${N} ${fmt}`);
    }
  }
  // float16 on a device without shader f16 streams float32: counted at 4 bytes.
  const noF16 = { description: "NVIDIA H100 80GB HBM3", features: { f16: false } };
  const f32 = leanGridFor(noF16 as unknown as GpuContext, decode(1, 32, 32, 65536), 264);
  deepStrictEqual(f32, leanGridFor(H100, { ...decode(1, 32, 32, 65536), kvDtype: "float32" }, 264));
});

Deno.test("leanGridFor picks among the base, one worker a unit or a SM, and their aligned multiples", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 32 }),
      fc.integer({ min: 1, max: 16 }),
      fc.constantFrom(1, 4, 8),
      fc.array(fc.integer({ min: 0, max: 1 << 19 }), { minLength: 1, maxLength: 4 }),
      fc.constantFrom(16, 64, 256),
      fc.integer({ min: 1, max: 600 }),
      (B, Hkv, rows, lens, tileSize, base) => {
        const kvLens = Array.from({ length: B }, (_, b) => lens[b % lens.length]);
        const p: LeanGridProblem = {
          plan: { batch: B, kvHeads: Hkv, kvLens, qBlocks: 1, tileSize },
          unitRows: rows,
          D: 128,
          kvDtype: "float16",
        };
        const units = B * Hkv;
        const g = leanGridFor(H200, p, base);
        const candidates = [base, units, 132, units * Math.floor(base / units)];
        candidates.push(units * Math.floor(132 / units));
        assert(candidates.includes(g), `grid ${g}`);
        assert(Number.isSafeInteger(g) && g >= 1);
      },
    ),
    { numRuns: 200 },
  );
});

/** The CPU backend with a `leanGrid` of our choosing. */
function withLeanGrid(pick: (p: LeanGridProblem, base: number) => number): Backend {
  const b = cpu();
  return new Proxy(b, {
    get(t, key) {
      if (key === "leanGrid") return pick;
      const v = Reflect.get(t, key, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

Deno.test("leanAttention takes the backend's grid, falls back on a bad one, obeys an explicit grid", async () => {
  const seen: LeanGridProblem[] = [];
  const b7 = withLeanGrid((p) => (seen.push(p), 7));
  const q = randn([2, 8, 1, 16], { seed: 1, backend: b7 });
  const k = randn([2, 2, 300, 16], { seed: 2, backend: b7 });
  const v = randn([2, 2, 300, 16], { seed: 3, backend: b7 });
  deepStrictEqual(leanAttentionSchedule(q, k, v).plan.grid, 7);
  deepStrictEqual(seen[0].unitRows, 4);
  deepStrictEqual(seen[0].plan.kvLens, [300, 300]);
  deepStrictEqual(leanAttentionSchedule(q, k, v, { grid: 3 }).plan.grid, 3);
  const diff = maxAbsDiff(
    await leanAttention(q, k, v).data(),
    await flashAttention(q, k, v).data(),
  );
  assert(diff < 1e-5, `lean with the backend's grid vs flash: ${diff}`);
  for (const bad of [0, -1, 2.5, NaN, 1e12]) {
    const bb = withLeanGrid(() => bad);
    const qq = randn([1, 2, 1, 8], { seed: 4, backend: bb });
    const kk = randn([1, 2, 40, 8], { seed: 5, backend: bb });
    deepStrictEqual(leanAttentionSchedule(qq, kk, kk).plan.grid, defaultLeanGrid(bb), `${bad}`);
  }
});
