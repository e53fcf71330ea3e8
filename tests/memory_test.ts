/**
 * Memory: `backend.memory()` accounts every tensor (live bytes, pooled bytes, live count), a
 * 10,000-op loop that disposes what it no longer needs holds steady memory (live storage
 * back to the start, the GPU pool stops growing after warm-up), and tensors dropped without
 * `dispose()` are reclaimed once the garbage collector finalises them.
 *
 * The reclaim check runs in a subprocess with `--v8-flags=--expose-gc` (tests/_gc_reclaim.ts):
 * there no other test's dropped tensors move the live count, and collection is forced.
 */
import { ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import { naiveAttention } from "../attention/naive.ts";
import { add, mul } from "../ops/binary.ts";
import { matmul } from "../ops/matmul.ts";
import { softmax } from "../ops/softmax.ts";
import { exp } from "../ops/unary.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { DType } from "../tensor/dtype.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { describeBackends } from "./_backends.ts";
import { assertGcScript } from "./_gc_script.ts";

/** Bytes a backend stores per element of `dtype`. */
function storageBytes(backend: Backend, dtype: DType): number {
  return dtype === "float16" && backend.nativeF16 ? 2 : 4;
}

describeBackends(
  "memory() reports live bytes, pooled bytes and the live count",
  async (backend) => {
    for (const dtype of ["float32", "float16"] as const) {
      for (const n of [1, 5, 1000, 4097]) {
        const before = backend.memory();
        const t = tensor(new Float32Array(n).fill(1), { dtype, backend });
        const held = backend.memory();
        const exact = n * storageBytes(backend, dtype);
        const grew = held.liveBytes - before.liveBytes;
        assert(held.liveCount === before.liveCount + 1, `${dtype}[${n}]: live count`);
        // The GPU pool rounds sizes up to classes at most a quarter apart (16 bytes at least).
        assert(
          grew >= exact && grew <= Math.max(16, exact * 1.25 + 16),
          `${dtype}[${n}]: live bytes grew by ${grew}, stored ${exact}`,
        );
        // A view shares storage: no new bytes; the storage lives until the last view goes.
        const view = t.reshape([n, 1]);
        assert(backend.memory().liveBytes === held.liveBytes, "a reshape allocated");
        t.dispose();
        assert(backend.memory().liveCount === held.liveCount, "storage freed under a live view");
        assert((await view.data()).every((x) => x === 1), "the view lost its data");
        view.dispose();
        const after = backend.memory();
        assert(after.liveBytes === before.liveBytes, `${dtype}[${n}]: live bytes not returned`);
        assert(after.liveCount === before.liveCount, `${dtype}[${n}]: live count not returned`);
        if (backend.name === "webgpu") {
          // The freed buffer is idle in the pool (the cap is far above these sizes)...
          assert(after.pooledBytes >= before.pooledBytes, "released buffer not pooled");
        } else {
          // The CPU pools only attention scratch (bounded): a tensor's life leaves it alone.
          assert(after.pooledBytes === before.pooledBytes, "a CPU tensor changed the pool");
        }
      }
    }
    // ...and the next tensor of that size reuses it instead of growing the pool.
    const a = tensor(new Float32Array(777), { backend });
    a.dispose();
    const pooled = backend.memory().pooledBytes;
    const b = tensor(new Float32Array(777), { backend });
    assert(backend.memory().pooledBytes <= pooled, "a same-size tensor did not reuse the pool");
    b.dispose();
  },
);

describeBackends("a 10,000-op loop with disposal keeps memory bounded", async (backend) => {
  const start = backend.memory();
  const w = randn([32, 32], { seed: 1, backend });
  const q = randn([1, 4, 1, 16], { seed: 2, backend });
  const k = randn([1, 2, 50, 16], { seed: 3, backend });
  let x = randn([8, 32], { seed: 4, backend });
  const checkpoints: { i: number; live: number; bytes: number; pooled: number }[] = [];
  let ops = 0;
  for (let i = 0; ops < 10_000; i++) {
    // Elementwise ops with scalars, a matmul, a softmax and, every 50 steps, every attention
    // algorithm and a merge: the pool sees many size classes.
    const steps: (() => Tensor)[] = [
      () => add(x, 0.25),
      () => mul(x, 0.5),
      () => softmax(x, -1),
      () => matmul(x, w),
      () => {
        const small = mul(x, 0.01);
        const y = exp(small);
        small.dispose();
        return y;
      },
    ];
    for (const step of steps) {
      const y = step();
      x.dispose();
      x = y;
      ops++;
    }
    if (i % 50 === 0) {
      const a = flashAttention(q, k, k, { returnLse: true, numSplits: 3, blockN: 8 });
      const b = leanAttention(q, k, k, { returnLse: true, grid: 5, tileSize: 7 });
      const m = mergeAttentionStates([a, b]);
      const n = naiveAttention(q, k, k, { causal: true });
      for (const t of [a.out, a.lse, b.out, b.lse, m.out, m.lse, n]) t.dispose();
      ops += 4;
    }
    if (i % 200 === 199) {
      await x.data(); // let the GPU finish and its scratch buffers return to the pool
      const mem = backend.memory();
      checkpoints.push({ i, live: mem.liveCount, bytes: mem.liveBytes, pooled: mem.pooledBytes });
    }
  }
  assert(checkpoints.length >= 5, "too few checkpoints");
  const warm = checkpoints[1];
  for (const c of checkpoints.slice(1)) {
    assert(c.live === warm.live, `live count drifts: ${JSON.stringify(checkpoints)}`);
    assert(c.bytes === warm.bytes, `live bytes drift: ${JSON.stringify(checkpoints)}`);
    assert(c.pooled <= warm.pooled, `the pool keeps growing: ${JSON.stringify(checkpoints)}`);
  }
  for (const t of [w, q, k, x]) t.dispose();
  const end = backend.memory();
  assert(end.liveCount === start.liveCount, `live count ${start.liveCount} → ${end.liveCount}`);
  assert(end.liveBytes === start.liveBytes, `live bytes ${start.liveBytes} → ${end.liveBytes}`);
});

describeBackends("tensors dropped without dispose() are reclaimed", async (backend) => {
  // In a process of its own with gc() exposed: deterministic (see tests/_gc_reclaim.ts).
  await assertGcScript(new URL("./_gc_reclaim.ts", import.meta.url), [backend.name]);
});
