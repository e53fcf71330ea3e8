/**
 * The forget path of `backends/cpu/_worker_memories.ts`, run in a process of its own with
 * `gc()` exposed (tests/cpu_worker_memories_test.ts starts it):
 *
 *     deno run -A --v8-flags=--expose-gc tests/_gc_worker_memories.ts
 *
 * K/V in WebAssembly memory go to the Workers once; once those tensors are collected here,
 * the Workers must drop their memories too (else each Worker would keep every K/V it ever
 * saw). Prints one JSON line: `{ ok, held }` or `{ ok: false, error }`.
 */
import { cpu } from "../backends/cpu/cpu_backend.ts";
import {
  closeAttentionWorkers,
  cpuAttentionParallel,
  workerHeldMemories,
} from "../backends/cpu/_attention_worker.ts";
import { setWasmBacking } from "../backends/cpu/_storage.ts";
import { leanAttentionSchedule } from "../attention/lean.ts";
import { plainRun } from "../schedule/attention_plan.ts";
import { randn } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");

const THREADS = 3; // two Workers
const backend = cpu();
const q = randn([1, 2, 1, 32], { seed: 1, backend });
// Tensors only ever in `held`, never in a local of a suspended async frame (see _gc_reclaim.ts).
const held: { k: Tensor | null; v: Tensor | null } = { k: null, v: null };

function makeKV(seed: number): void {
  setWasmBacking(true, 4096);
  held.k = randn([1, 1, 512, 32], { seed, backend });
  held.v = randn([1, 1, 512, 32], { seed: seed + 1, backend });
  setWasmBacking(true);
}

async function call(): Promise<void> {
  const info = (t: Tensor) => ({ id: t.id, shape: t.shape, dtype: t.dtype });
  const schedule = leanAttentionSchedule(q, held.k!, held.v!, { grid: 4, tileSize: 16 });
  const params = plainRun({
    algo: "lean",
    scale: 0.2,
    causal: false,
    kvLens: Int32Array.from([512]),
    schedule,
  });
  await cpuAttentionParallel(info(q), info(held.k!), info(held.v!), params, { threads: THREADS });
}

try {
  const counts: number[] = [];
  for (let round = 0; round < 4; round++) {
    makeKV(10 * round + 2);
    await call();
    await call(); // by number only: the count must not grow
    counts.push(workerHeldMemories());
    held.k = held.v = null;
    for (let i = 0; i < 20; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 0));
    }
  }
  // Each of the two Workers holds this round's K and V; forgotten ones are gone by the next.
  const ok = counts.every((c) => c === 2 * (THREADS - 1));
  console.log(JSON.stringify({ ok, held: counts, ...!ok && { error: `held ${counts}` } }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e) }));
} finally {
  closeAttentionWorkers();
}
