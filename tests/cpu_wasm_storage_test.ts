/**
 * CPU storage in shared WebAssembly memory (`backends/cpu/_storage.ts`): float tensors from
 * `WASM_BACKED_MIN_BYTES` on live in a shared `WebAssembly.Memory` of their own, whose tiles
 * the attention kernels copy with `memory.copy` (`_wasm_copy.ts`) instead of
 * `TypedArray.prototype.set`. Only the copy differs: attention over such K/V must give the
 * bits of the same K/V in plain SharedArrayBuffers, in this thread and on the worker pool.
 * int8 and float8e4m3 codes from 1 MiB on live there too (their rows copied as bytes).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { cpuAttention } from "../backends/cpu/attention.ts";
import {
  closeAttentionWorkers,
  cpuAttentionParallel,
  poolTesting,
} from "../backends/cpu/_attention_worker.ts";
import {
  allocCpu,
  cpuValues,
  setWasmBacking,
  WASM_BACKED_MIN_BYTES,
  wasmMemoryOf,
} from "../backends/cpu/_storage.ts";
import { leanAttentionSchedule } from "../attention/lean.ts";
import { plainRun } from "../schedule/attention_plan.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";

Deno.test("cpu storage: from 1 MiB on in shared WebAssembly memory, unless turned off", () => {
  const big = allocCpu(WASM_BACKED_MIN_BYTES / 4, "float32");
  const mem = wasmMemoryOf(big);
  assert(mem !== undefined, "1 MiB of float32: a WebAssembly memory");
  assert(mem.buffer.byteLength >= big.byteLength && big.byteOffset === 0, "the array is its start");
  assert(big.every((x) => x === 0), "zeroed");
  assert(wasmMemoryOf(allocCpu(WASM_BACKED_MIN_BYTES / 4 - 1, "float32")) === undefined);
  assert(wasmMemoryOf(allocCpu(WASM_BACKED_MIN_BYTES / 2, "float16")) !== undefined);
  try {
    setWasmBacking(false);
    assert(wasmMemoryOf(allocCpu(WASM_BACKED_MIN_BYTES, "float32")) === undefined, "off");
  } finally {
    setWasmBacking(true);
  }
});

Deno.test({
  name: "cpu attention over K/V in WebAssembly memory gives the SharedArrayBuffer bits",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const backend = cpu();
    const seed = Date.now() % 1_000_000;
    let rnd = seed;
    const next = (n: number) => (rnd = (rnd * 1103515245 + 12345) % 2147483648) % n;
    const info = (t: Tensor) => ({ id: t.id, shape: t.shape, dtype: t.dtype });
    const made: Tensor[] = [];
    // The previous case again, after another case's memories: Workers got its memories
    // before and now get only their numbers (`_worker_memories.ts`).
    let again: (() => Promise<void>) | null = null;
    try {
      for (let c = 0; c < 8; c++) {
        const dtype = c % 2 === 0 ? "float32" : "float16";
        // 40, 24: rows copied one by one (D ≠ 16·k); 64, 128: whole tiles, both dtypes.
        const D = [40, 64, 24, 128][(c >> 1) % 4];
        const Hkv = 1 + next(2), group = 1 + next(3), B = 1 + next(2), Sq = 1 + next(3);
        const N = 200 + next(700);
        const where = `seed ${seed} case ${c}: ${dtype} B ${B} Hkv ${Hkv} group ${group} ` +
          `Sq ${Sq} N ${N} D ${D}`;
        const q = randn([B, Hkv * group, Sq, D], { seed: seed + c, dtype, backend });
        // Wasm-backed from 4 KiB on, so every K/V of these shapes is; then plain copies.
        setWasmBacking(true, 4096);
        const k = randn([B, Hkv, N, D], { seed: seed + c + 1, dtype, backend });
        const v = randn([B, Hkv, N, D], { seed: seed + c + 2, dtype, backend });
        setWasmBacking(false);
        const kp = tensor(await k.data(), { shape: k.shape, dtype, backend });
        const vp = tensor(await v.data(), { shape: v.shape, dtype, backend });
        setWasmBacking(true);
        made.push(q, k, v, kp, vp);
        assert(wasmMemoryOf(cpuValues(info(k))) && !wasmMemoryOf(cpuValues(info(kp))), where);
        const schedule = leanAttentionSchedule(q, k, v, {
          grid: 1 + next(6),
          tileSize: [16, 32, 64][next(3)],
        });
        const kvLens = Int32Array.from({ length: B }, (_, b) => b === 1 ? 1 + next(N) : N);
        const params = plainRun({
          algo: "lean",
          scale: 1 / Math.sqrt(D),
          causal: Sq > 1,
          kvLens,
          schedule,
        });
        const want = cpuAttention(info(q), info(kp), info(vp), params);
        const got = cpuAttention(info(q), info(k), info(v), params);
        assertEquals(got.out, want.out, `${where}: out`);
        assertEquals(got.lse, want.lse, `${where}: lse`);
        const par = await cpuAttentionParallel(info(q), info(k), info(v), params, { threads: 3 });
        assertEquals(par.out, want.out, `${where}: out, worker pool`);
        assertEquals(par.lse, want.lse, `${where}: lse, worker pool`);
        await again?.();
        again = async () => {
          const r = await cpuAttentionParallel(info(q), info(k), info(v), params, { threads: 3 });
          assertEquals(r.out, want.out, `${where}: out, worker pool, again`);
        };
      }
    } finally {
      setWasmBacking(true);
      closeAttentionWorkers();
      for (const t of made) t.dispose();
    }
  },
});

Deno.test({
  name: "cpu attention over int8 and float8e4m3 K/V in WebAssembly memory gives the plain bits",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const la = await import("../mod.ts");
    const backend = cpu();
    const seed = Date.now() % 1_000_000;
    const info = (t: Tensor) => ({ id: t.id, shape: t.shape, dtype: t.dtype });
    // (8800 + 8000) keys · 2 heads · D ≥ 2²¹ elements: two threads take the pool (and ship
    // the memories)
    const before = poolTesting.pooledCalls;
    const wasThreads = la.setCpuThreads(1);
    try {
      for (const [c, dtype] of (["int8", "float8e4m3"] as const).entries()) {
        for (const D of [64, 128]) {
          const where = `seed ${seed}, ${dtype}, D ${D}`;
          const q = randn([2, 6, 1, D], { seed: seed + c, backend });
          const k = randn([2, 2, 8800, D], { seed: seed + c + 1, backend });
          const v = randn([2, 2, 8800, D], { seed: seed + c + 2, backend });
          // the codes in WebAssembly memory from 4 KiB on, then the same codes in plain buffers
          setWasmBacking(true, 4096);
          const kw = la.quantize(k, { dtype }), vw = la.quantize(v, { dtype });
          setWasmBacking(false);
          const kp = la.quantize(k, { dtype }), vp = la.quantize(v, { dtype });
          setWasmBacking(true);
          const codes = (x: { data: Tensor }) => cpuValues(info(x.data));
          assert(wasmMemoryOf(codes(kw)) && !wasmMemoryOf(codes(kp)), where);
          const opts = { kvLens: [8800, 8000], grid: 5 };
          const outs = [];
          for (const [kk, vv] of [[kw, vw], [kp, vp]]) {
            for (const threads of [1, 2]) {
              la.setCpuThreads(threads);
              const r = la.leanAttention(q, kk, vv, { ...opts, returnLse: true });
              outs.push({ out: await r.out.data(), lse: await r.lse.data() });
              r.out.dispose();
              r.lse.dispose();
            }
          }
          for (const o of outs.slice(1)) {
            assertEquals(o.out, outs[0].out, `${where}: out`);
            assertEquals(o.lse, outs[0].lse, `${where}: lse`);
          }
          for (const t of [q, k, v, kw.data, kw.scale, vw.data, vw.scale, kp.data, kp.scale]) {
            t.dispose();
          }
          vp.data.dispose();
          vp.scale.dispose();
        }
      }
      assert(poolTesting.pooledCalls === before + 8, "the two-thread calls went to the pool");
    } finally {
      setWasmBacking(true);
      la.setCpuThreads(wasThreads);
    }
  },
});
