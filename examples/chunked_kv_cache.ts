/**
 * Attention over a KV cache held in chunks (pages, shards, devices): attend to each chunk on
 * its own with `returnLse: true`, then join the pieces with `mergeAttentionStates`. The merge
 * is exact, so the result equals attention over the whole cache.
 *
 *     deno run -A examples/chunked_kv_cache.ts [--gpu] [--n 3000] [--chunk 700]
 */
import * as la from "../mod.ts";
import { exampleBackend, flag } from "./_args.ts";

const backend = await exampleBackend();
const [B, Hq, Hkv, D] = [1, 8, 2, 64];
const N = Number(flag("n", "3000"));
const chunk = Number(flag("chunk", "700"));

// One decode step: a query token, and the cache's keys and values as separate chunks.
const q = la.randn([B, Hq, 1, D], { seed: 1, backend });
const chunks: { k: la.Tensor; v: la.Tensor }[] = [];
for (let start = 0, i = 0; start < N; start += chunk, i++) {
  const len = Math.min(chunk, N - start);
  chunks.push({
    k: la.randn([B, Hkv, len, D], { seed: 100 + i, backend }),
    v: la.randn([B, Hkv, len, D], { seed: 200 + i, backend }),
  });
}

// Each chunk on its own (any algorithm; lean here), keeping the log-sum-exp.
const states = chunks.map(({ k, v }) => la.leanAttention(q, k, v, { returnLse: true }));
const merged = la.mergeAttentionStates(states);

// The same attention over the whole cache, for comparison: concatenate the chunks on the host.
async function concat(parts: la.Tensor[]): Promise<la.Tensor> {
  const datas = await Promise.all(parts.map((t) => t.data()));
  const whole = new Float32Array(B * Hkv * N * D);
  for (let bh = 0; bh < B * Hkv; bh++) {
    let row = 0;
    for (const [i, d] of datas.entries()) {
      const len = parts[i].shape[2];
      whole.set(d.subarray(bh * len * D, (bh + 1) * len * D), (bh * N + row) * D);
      row += len;
    }
  }
  return la.tensor(whole, { shape: [B, Hkv, N, D], backend });
}
const k = await concat(chunks.map((c) => c.k));
const v = await concat(chunks.map((c) => c.v));
const whole = la.naiveAttention(q, k, v);

const [a, b] = await Promise.all([merged.out.data(), whole.data()]);
const diff = a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
console.log(`${chunks.length} chunks of ≤ ${chunk} keys (N = ${N}) on ${backend.name}`);
console.log(`max |merged − whole| = ${diff.toExponential(2)}`);
for (const t of [q, k, v, whole, merged.out, merged.lse]) t.dispose();
for (const s of states) [s.out, s.lse].forEach((t) => t.dispose());
for (const c of chunks) [c.k, c.v].forEach((t) => t.dispose());
if (!(diff < 1e-5)) Deno.exit(1);
