/**
 * The CPU worker pool (`backends/cpu/_attention_worker.ts`) across calls: a Worker is sent a
 * schedule once and afterwards only its number, forgets its schedules past a bound, and the
 * calling thread runs one range itself (or, split `claimed`, takes workers from the shared
 * counter like the Workers). Every call must still give the in-thread executor's
 * bits, whichever of those paths it took.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { cpuAttention } from "../backends/cpu/attention.ts";
import {
  closeAttentionWorkers,
  cpuAttentionParallel,
  poolTesting,
} from "../backends/cpu/_attention_worker.ts";
import { leanAttentionSchedule } from "../attention/lean.ts";
import { plainRun } from "../schedule/attention_plan.ts";
import { randn } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";

const info = (t: Tensor) => ({ id: t.id, shape: t.shape, dtype: t.dtype });

/** Seeded random q `[2, 4, Sq, 16]` and K, V `[2, 2, N, 16]` (the seed printed). */
function problem(Sq: number, N: number) {
  const backend = cpu();
  const seed = Date.now() % 1_000_000;
  console.log(`  seed ${seed}`);
  const q = randn([2, 4, Sq, 16], { seed, backend });
  const k = randn([2, 2, N, 16], { seed: seed + 1, backend });
  const v = randn([2, 2, N, 16], { seed: seed + 2, backend });
  return { q, k, v, dispose: () => [q, k, v].forEach((t) => t.dispose()) };
}

/** Lean's plan of `grid` workers (tiles of 16 keys) over sequences of `lens` keys. */
function leanParams(q: Tensor, k: Tensor, v: Tensor, grid: number, lens: number[], causal = false) {
  const schedule = leanAttentionSchedule(q, k, v, { grid, tileSize: 16 });
  return plainRun({ algo: "lean", scale: 0.25, causal, kvLens: Int32Array.from(lens), schedule });
}

Deno.test({
  name: "cpu worker pool: repeated, new and forgotten schedules give the in-thread bits",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { q, k, v, dispose } = problem(3, 300);
    // 70 grids: more schedules than a Worker keeps (64), then the first ones again.
    const grids = [...Array.from({ length: 70 }, (_, i) => i + 1), 1, 2, 3, 1];
    try {
      for (const grid of grids) {
        const params = leanParams(q, k, v, grid, [300, 171], grid % 2 === 0);
        const serial = cpuAttention(info(q), info(k), info(v), params);
        for (const threads of [1, 3]) {
          for (const split of ["claimed", "ranges"] as const) {
            const par = await cpuAttentionParallel(info(q), info(k), info(v), params, {
              threads,
              split,
            });
            const where = `grid ${grid}, ${threads} threads, ${split}`;
            assertEquals(par.out, serial.out, `${where}: out`);
            assertEquals(par.lse, serial.lse, `${where}: lse`);
          }
        }
      }
    } finally {
      closeAttentionWorkers();
      dispose();
    }
  },
});

Deno.test({
  name:
    "cpu worker pool: a Worker's failure rejects the call after every job ended; the pool recovers",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { q, k, v, dispose } = problem(1, 200);
    const params = leanParams(q, k, v, 8, [200, 77]);
    const serial = cpuAttention(info(q), info(k), info(v), params);
    try {
      for (const split of ["claimed", "ranges"] as const) {
        poolTesting.fail = true;
        let error: unknown = null;
        try {
          await cpuAttentionParallel(info(q), info(k), info(v), params, { threads: 3, split });
        } catch (e) {
          error = e;
        } finally {
          poolTesting.fail = null;
        }
        if (!String(error).includes("attention worker failed: Error: failure injected")) {
          throw new Error(`${split}: expected the Workers' failure, got ${error}`);
        }
        // The same Workers run the next call, and it gives the in-thread bits.
        const par = await cpuAttentionParallel(info(q), info(k), info(v), params, {
          threads: 3,
          split,
        });
        assertEquals(par.out, serial.out, `${split}: out after a failure`);
        assertEquals(par.lse, serial.lse, `${split}: lse after a failure`);
      }
    } finally {
      poolTesting.fail = null;
      closeAttentionWorkers();
      dispose();
    }
  },
});
