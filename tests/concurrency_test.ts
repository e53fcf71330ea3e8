/**
 * Concurrency: many async callers interleaving ops, reads, disposals and failing calls on one
 * backend (and across backends) get exactly — bit for bit — what the same calls give run one
 * after another. On WebGPU this exercises pending-encoder reuse of released buffers, reads in
 * flight together, automatic submissions between callers' dispatches and error scopes.
 */
import { ok as assert, throws } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import { naiveAttention } from "../attention/naive.ts";
import { add, mul } from "../ops/binary.ts";
import { matmul } from "../ops/matmul.ts";
import { softmax } from "../ops/softmax.ts";
import { randn } from "../tensor/creation.ts";
import { ArgumentError } from "../tensor/errors.ts";
import { uniformGenerator } from "../tensor/random.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { backends, describeBackends } from "./_backends.ts";

/** Yields to the event loop in a seeded, caller-specific rhythm (or not at all). */
function pacer(seed: number, on: boolean): () => Promise<void> {
  const u = uniformGenerator(seed);
  return async () => {
    if (!on) return;
    const r = u();
    if (r < 0.3) await Promise.resolve();
    else if (r < 0.8) await new Promise((ok) => setTimeout(ok, 0));
    else await new Promise((ok) => setTimeout(ok, 1 + Math.floor(u() * 4)));
  };
}

/**
 * One caller's work: attention of one kind, a read in the middle, more ops on the result, a
 * merge, disposals while other callers' work is pending, a call that must fail, and a final
 * read. Returns every value it read.
 */
async function caller(backend: Backend, id: number, interleave: boolean): Promise<Float32Array[]> {
  const pause = pacer(1000 + id, interleave);
  const dtype = id % 4 === 3 ? "float16" as const : "float32" as const;
  const B = 1 + (id % 2);
  const N = 20 + 7 * id;
  const q = randn([B, 4, 1 + (id % 3), 8], { seed: id, dtype, backend });
  const k = randn([B, 2, N, 8], { seed: id + 50, dtype, backend });
  const v = randn([B, 2, N, 8], { seed: id + 90, dtype, backend });
  await pause();
  const kvLens = B === 2 ? [N, Math.floor(N / 3)] : undefined;
  const first = id % 3 === 0
    ? flashAttention(q, k, v, { kvLens, returnLse: true, numSplits: 1 + (id % 4), blockN: 8 })
    : id % 3 === 1
    ? leanAttention(q, k, v, { kvLens, returnLse: true, grid: 2 + id, tileSize: 5 })
    : naiveAttention(q, k, v, { kvLens, returnLse: true, causal: true });
  await pause();
  const mid = await first.lse.data();
  // A bad call in the middle must throw and disturb no one.
  throws(() => leanAttention(q, k, v, { grid: 0 }), ArgumentError);
  const second = leanAttention(q, k, v, { kvLens, returnLse: true, grid: 3, tileSize: 4 });
  q.dispose(); // released while its uses may still be pending
  await pause();
  const merged = mergeAttentionStates([first, second]);
  for (const t of [first.out, first.lse, second.out, second.lse]) t.dispose();
  await pause();
  const flat = merged.out.reshape([-1, 8]);
  const w = randn([8, 8], { seed: id + 7, dtype, backend });
  const mm = matmul(flat, w);
  const half = mul(flat, 0.5);
  const sum = add(mm, half);
  const y = softmax(sum, -1);
  await pause();
  const out: Float32Array[] = [mid, await merged.lse.data(), await y.data()];
  for (const t of [k, v, merged.out, merged.lse, flat, w, mm, half, sum, y] as Tensor[]) {
    t.dispose();
  }
  return out;
}

const CALLERS = 12;

function sameBits(a: Float32Array[], b: Float32Array[], what: string): void {
  assert(a.length === b.length, `${what}: ${a.length} vs ${b.length} reads`);
  a.forEach((x, r) => {
    const xb = new Uint32Array(x.buffer, x.byteOffset, x.length);
    const yb = new Uint32Array(b[r].buffer, b[r].byteOffset, b[r].length);
    assert(xb.length === yb.length, `${what}: read ${r} length`);
    for (let i = 0; i < xb.length; i++) {
      assert(xb[i] === yb[i], `${what}: read ${r}[${i}]: ${x[i]} vs sequential ${b[r][i]}`);
    }
  });
}

describeBackends("interleaved async callers get what sequential calls get", async (backend) => {
  const start = backend.memory().liveCount;
  const sequential: Float32Array[][] = [];
  for (let id = 0; id < CALLERS; id++) sequential.push(await caller(backend, id, false));
  // Twice: the second round starts with a warm pool and pipeline cache.
  for (let round = 0; round < 2; round++) {
    const together = await Promise.all(
      Array.from({ length: CALLERS }, (_, id) => caller(backend, id, true)),
    );
    together.forEach((r, id) => sameBits(r, sequential[id], `round ${round} caller ${id}`));
  }
  assert(backend.memory().liveCount === start, "callers leaked storage");
});

Deno.test({
  name: "callers on the CPU and WebGPU at once, copying between them, match sequential runs",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const gpu = (await backends()).find((b) => b.name === "webgpu");
    if (!gpu) {
      console.warn("  (no webgpu backend: skipped)");
      return;
    }
    // Each caller computes on one backend, copies the result to the other and continues there.
    const run = async (id: number, interleave: boolean) => {
      const pause = pacer(77 + id, interleave);
      const [here, there] = id % 2 ? [gpu, cpu()] : [cpu(), gpu];
      const q = randn([1, 2, 1, 8], { seed: id, backend: here });
      const k = randn([1, 1, 40 + id, 8], { seed: id + 1, backend: here });
      const a = flashAttention(q, k, k, { numSplits: 3, blockN: 8 });
      await pause();
      const moved = await a.to(there);
      const k2 = await k.to(there);
      await pause();
      const q2 = moved.reshape([1, 2, 1, 8]);
      const b = leanAttention(q2, k2, k2, { grid: 4, tileSize: 6 });
      const got = [await a.data(), await b.data()];
      for (const t of [q, k, a, moved, k2, q2, b]) t.dispose();
      return got;
    };
    const sequential: Float32Array[][] = [];
    for (let id = 0; id < 8; id++) sequential.push(await run(id, false));
    const together = await Promise.all(Array.from({ length: 8 }, (_, id) => run(id, true)));
    together.forEach((r, id) => sameBits(r, sequential[id], `caller ${id}`));
  },
});
