/**
 * `kvCache` over time, on every backend: many single-token appends store what one bulk
 * append stores (attention equal bit for bit), device memory stays flat over a long
 * append/free loop (and returns exactly to its start), and `fork` shares pages (no new device
 * memory) while forked sequences diverge correctly through copy on write, also after the
 * parent is freed and its pages reused. A host model of every sequence's tokens gives the
 * float64 reference.
 */
import { ok as assert, strictEqual } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { tensor } from "../tensor/creation.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { naiveAttention } from "../attention/naive.ts";
import { type KVCache, kvCache } from "../attention/kv_cache.ts";
import { describeBackends } from "./_backends.ts";
import {
  checkReference,
  chunk,
  type HostProblem,
  hostProblem,
  rng,
  sameBits,
  values,
} from "./_paged_api.ts";

const SEED = Number(Deno.env.get("PAGED_SEED") ?? Date.now() % 100000);
console.log(`kv_cache_test seed ${SEED} (replay: PAGED_SEED=${SEED})`);

/** Host tokens per sequence: `k[b][t]`, `v[b][t]` are `Hkv · D` values. */
class Model {
  k: Float32Array[][];
  v: Float32Array[][];
  constructor(B: number) {
    this.k = Array.from({ length: B }, () => []);
    this.v = Array.from({ length: B }, () => []);
  }
  get lens(): number[] {
    return this.k.map((s) => s.length);
  }
  /** A problem whose contiguous K/V hold the model's tokens (q given). */
  problem(q: Float32Array, dims: { Hq: number; Hkv: number; D: number }): HostProblem {
    const { Hq, Hkv, D } = dims;
    const B = this.k.length;
    const N = Math.max(1, ...this.lens);
    const k = new Float32Array(B * Hkv * N * D);
    const v = new Float32Array(B * Hkv * N * D);
    for (let b = 0; b < B; b++) {
      this.k[b].forEach((row, t) => {
        for (let h = 0; h < Hkv; h++) {
          k.set(row.subarray(h * D, (h + 1) * D), ((b * Hkv + h) * N + t) * D);
          v.set(this.v[b][t].subarray(h * D, (h + 1) * D), ((b * Hkv + h) * N + t) * D);
        }
      });
    }
    return { B, Hq, Hkv, Sq: 1, N, D, q, k, v, dtype: "float32" };
  }
}

/** Appends `take[b]` fresh random tokens to sequence b of both the cache and the model. */
function appendRandom(
  cache: KVCache,
  model: Model,
  take: number[],
  rand: () => number,
  backend: Backend,
): void {
  const { batch: B, kvHeads: Hkv, headDim: D } = cache;
  const S = Math.max(1, ...take);
  const k = new Float32Array(B * Hkv * S * D).fill(NaN);
  const v = new Float32Array(B * Hkv * S * D).fill(NaN);
  const rows: [Float32Array, Float32Array][][] = [];
  for (let b = 0; b < B; b++) {
    rows.push([]);
    for (let s = 0; s < take[b]; s++) {
      const kr = values(Hkv * D, rand, "float32");
      const vr = values(Hkv * D, rand, "float32");
      rows[b].push([kr, vr]);
      for (let h = 0; h < Hkv; h++) {
        k.set(kr.subarray(h * D, (h + 1) * D), ((b * Hkv + h) * S + s) * D);
        v.set(vr.subarray(h * D, (h + 1) * D), ((b * Hkv + h) * S + s) * D);
      }
    }
  }
  const kt = tensor(k, { shape: [B, Hkv, S, D], backend });
  const vt = tensor(v, { shape: [B, Hkv, S, D], backend });
  try {
    cache.append(kt, vt, { lens: take });
  } finally {
    kt.dispose();
    vt.dispose();
  }
  rows.forEach((r, b) => {
    for (const [kr, vr] of r) {
      model.k[b].push(kr);
      model.v[b].push(vr);
    }
  });
}

/** Lean attention over the cache against the model's float64 reference. */
async function checkModel(
  cache: KVCache,
  model: Model,
  q: Float32Array,
  backend: Backend,
  what: string,
): Promise<void> {
  const dims = { Hq: 4, Hkv: cache.kvHeads, D: cache.headDim };
  assert(cache.lens.every((n, b) => n === model.lens[b]), `${what}: lens ${cache.lens}`);
  const qt = tensor(q, { shape: [cache.batch, dims.Hq, 1, dims.D], backend });
  const out = leanAttention(qt, cache, { tileSize: 8 });
  try {
    checkReference(await out.data(), model.problem(q, dims), model.lens, what);
  } finally {
    out.dispose();
    qt.dispose();
  }
}

describeBackends(
  "kvCache: single-token appends store what one bulk append stores",
  async (backend) => {
    // 10,000 appends on the CPU; lavapipe (a software GPU) runs each append's scatters slowly,
    // so it gets 400.
    const appends = backend.name === "cpu" ? 10_000 : 400;
    const dims = { B: 2, Hq: 4, Hkv: 2, Sq: 1, N: appends, D: 8 };
    const p = hostProblem(SEED, dims, "float32");
    const lens = [appends, Math.floor(appends * 0.7)];
    const opts = { batch: 2, kvHeads: 2, headDim: 8, pageSize: 16, capacity: 2 * appends, backend };
    const bulk = kvCache(opts);
    const single = kvCache({ ...opts, pagesPerBuffer: 97 });
    const q = tensor(p.q, { shape: [2, 4, 1, 8], backend });
    try {
      const k = chunk(p, p.k, [0, 0], lens, backend);
      const v = chunk(p, p.v, [0, 0], lens, backend);
      bulk.append(k, v, { lens });
      k.dispose();
      v.dispose();
      for (let t = 0; t < appends; t++) {
        const from = lens.map((n) => Math.min(n, t));
        const to = lens.map((n) => Math.min(n, t + 1));
        const kt = chunk(p, p.k, from, to, backend);
        const vt = chunk(p, p.v, from, to, backend);
        single.append(kt, vt, { lens: to.map((x, b) => x - from[b]) });
        kt.dispose();
        vt.dispose();
      }
      strictEqual(single.lens.join(), lens.join());
      for (
        const [name, run] of [
          ["lean", (kv: KVCache) => leanAttention(q, kv, { tileSize: 32, grid: 7 })],
          ["flash-decoding", (kv: KVCache) => flashAttention(q, kv, { numSplits: 4 })],
          ["naive", (kv: KVCache) => naiveAttention(q, kv)],
        ] as const
      ) {
        const a = run(bulk);
        const b = run(single);
        const got = await b.data();
        sameBits(got, await a.data(), `${name}: ${appends} single appends vs one bulk append`);
        checkReference(got, p, lens, `${name} seed ${SEED}`);
        a.dispose();
        b.dispose();
      }
    } finally {
      q.dispose();
      bulk.dispose();
      single.dispose();
    }
  },
);

describeBackends("kvCache: device memory flat over a long append/free loop", async (backend) => {
  const rand = rng(SEED + 1);
  const B = 4, pageSize = 8, pages = 50;
  const before = backend.memory();
  const cache = kvCache({
    batch: B,
    kvHeads: 2,
    headDim: 8,
    pageSize,
    capacity: pages * pageSize,
    backend,
  });
  const made = backend.memory();
  const model = new Model(B);
  const q = values(B * 4 * 8, rand, "float32");
  const iterations = backend.name === "cpu" ? 600 : 120;
  try {
    for (let i = 0; i < iterations; i++) {
      const b = Math.floor(rand() * B);
      const take = Array(B).fill(0);
      take[b] = 1 + Math.floor(rand() * 20);
      const need = Math.ceil((cache.lens[b] + take[b]) / pageSize) -
        Math.ceil(cache.lens[b] / pageSize);
      if (need <= cache.freePages && rand() < 0.8) {
        appendRandom(cache, model, take, rand, backend);
      } else {
        cache.free(b);
        model.k[b] = [];
        model.v[b] = [];
      }
      if (i % 10 === 9) await checkModel(cache, model, q, backend, `seed ${SEED} step ${i}`);
      // Pages never grow; only the block table (≤ B · pages int32) comes and goes.
      const m = backend.memory();
      assert(m.liveCount <= made.liveCount + 1, `step ${i}: ${m.liveCount} live buffers`);
      assert(
        m.liveBytes <= made.liveBytes + Math.max(256, 8 * B * pages),
        `step ${i}: live bytes ${m.liveBytes}, after creation ${made.liveBytes}`,
      );
    }
    for (let b = 0; b < B; b++) cache.free(b);
    strictEqual(cache.freePages, pages);
    const end = backend.memory();
    strictEqual(end.liveBytes, made.liveBytes, "live bytes back to the new cache's");
    strictEqual(end.liveCount, made.liveCount);
  } finally {
    cache.dispose();
  }
  const after = backend.memory();
  strictEqual(after.liveBytes, before.liveBytes, "dispose frees every page buffer");
  strictEqual(after.liveCount, before.liveCount);
});

describeBackends(
  "kvCache: fork shares pages (counted once) and forked sequences diverge",
  async (backend) => {
    const rand = rng(SEED + 2);
    const B = 3, pageSize = 4;
    const cache = kvCache({ batch: B, kvHeads: 2, headDim: 8, pageSize, capacity: 80, backend });
    const model = new Model(B);
    const q = values(B * 4 * 8, rand, "float32");
    const check = (what: string) => checkModel(cache, model, q, backend, `seed ${SEED} ${what}`);
    const fork = (from: number, to: number) => {
      cache.fork(from, to);
      model.k[to] = [...model.k[from]];
      model.v[to] = [...model.v[from]];
    };
    const free = (b: number) => {
      cache.free(b);
      model.k[b] = [];
      model.v[b] = [];
    };
    try {
      appendRandom(cache, model, [10, 0, 0], rand, backend); // 2 full pages + 2 tokens
      await check("prefix");
      const pagesBefore = cache.freePages;
      const bytesBefore = backend.memory().liveBytes; // pages + a block table [3, 3]
      fork(0, 1);
      await check("forked");
      strictEqual(cache.freePages, pagesBefore, "fork takes no pages");
      strictEqual(backend.memory().liveBytes, bytesBefore, "shared pages counted once");
      // Sequence 1 writes into the shared, partly filled page: it gets its own copy (1 page)
      // and a new page for tokens 12.. (1 page).
      appendRandom(cache, model, [0, 3, 0], rand, backend);
      strictEqual(cache.freePages, pagesBefore - 2);
      await check("child appended");
      // Sequence 0 now holds its last page alone: it writes in place (one new page at 12..).
      appendRandom(cache, model, [5, 0, 0], rand, backend);
      strictEqual(cache.freePages, pagesBefore - 3);
      await check("parent appended");
      fork(1, 2);
      free(1); // sequence 2 keeps every page it shares with 1
      await check("grandchild after its parent was freed");
      free(0); // frees 0's own pages only; the prefix pages stay with 2
      appendRandom(cache, model, [17, 0, 2], rand, backend); // reuses the freed pages
      await check("freed pages reused");
    } finally {
      cache.dispose();
    }
  },
);
