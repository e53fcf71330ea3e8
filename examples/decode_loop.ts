/**
 * A small decoder's generation loop over paged KV caches (one per layer), with random
 * weights: each step projects the hidden state to q, k, v (matmul), rotates q and k at the
 * token's position (rope), appends k and v to the layer's cache in place, runs lean attention
 * over the cache and projects back (plus a residual). Prints each step's time; device memory
 * stays flat because the caches allocated all their pages up front. Checks lean against naive
 * attention over the same cache at the end and exits non-zero when they disagree.
 *
 *     deno run -A examples/decode_loop.ts [--gpu] [--layers 4] [--prompt 256] [--steps 64]
 *       [--batch 2] [--page 16]
 */
import * as la from "../mod.ts";
import { exampleBackend, flag } from "./_args.ts";

const backend = await exampleBackend();
const layers = Number(flag("layers", "4"));
const prompt = Number(flag("prompt", "256"));
const steps = Number(flag("steps", "64"));
const B = Number(flag("batch", "2"));
const pageSize = Number(flag("page", "16"));
const [Hq, Hkv, D] = [8, 2, 32];
const dm = Hq * D; // model width

let seed = 1;
const weight = (rows: number, cols: number) =>
  la.mul(la.randn([rows, cols], { seed: seed++, backend }), 1 / Math.sqrt(rows));
const W = Array.from({ length: layers }, () => ({
  q: weight(dm, Hq * D),
  k: weight(dm, Hkv * D),
  v: weight(dm, Hkv * D),
  o: weight(Hq * D, dm),
}));
const caches = W.map(() =>
  la.kvCache({
    batch: B,
    kvHeads: Hkv,
    headDim: D,
    pageSize,
    // Every sequence rounds up to whole pages.
    capacity: B * Math.ceil((prompt + steps) / pageSize) * pageSize,
    backend,
  })
);

/** x `[B, S, dm]` · w → heads `[B, H, S, D]`. */
function heads(x: la.Tensor, w: la.Tensor, H: number): la.Tensor {
  const S = x.shape[1];
  const y = la.matmul(x, w);
  const y4 = y.reshape([B, S, H, D]); // a view: shares y's storage until both are disposed
  const t = la.transpose(y4, [0, 2, 1, 3]);
  y.dispose();
  y4.dispose();
  return t;
}

/** One pass of every layer over S new tokens per sequence (the prompt, or one token). */
function forward(x0: la.Tensor): la.Tensor {
  const S = x0.shape[1];
  let x = x0;
  for (let l = 0; l < layers; l++) {
    const cache = caches[l];
    const offset = [...cache.lens]; // the new tokens' positions start at each length
    const [q0, k0, v] = [heads(x, W[l].q, Hq), heads(x, W[l].k, Hkv), heads(x, W[l].v, Hkv)];
    const q = la.rope(q0, { offset });
    const k = la.rope(k0, { offset });
    cache.append(k, v);
    const a = la.leanAttention(q, cache, { causal: true }); // [B, Hq, S, D]
    const merged = la.transpose(a, [0, 2, 1, 3]);
    const flat = merged.reshape([B, S, Hq * D]);
    const o = la.matmul(flat, W[l].o);
    const sum = la.add(x, o);
    const next = la.tanh(sum); // keeps the random network's activations bounded
    for (const t of [q0, k0, v, q, k, a, merged, flat, o, sum]) t.dispose();
    if (x !== x0) x.dispose();
    x = next;
  }
  return x;
}

console.log(
  `${layers} layers, batch ${B}, Hq ${Hq}, Hkv ${Hkv}, D ${D}, page ${pageSize} on ` +
    `${backend.name}: prefill ${prompt} tokens, then ${steps} decode steps`,
);
const embed = la.randn([B, prompt, dm], { seed: 1000, backend });
let t0 = performance.now();
let last = forward(embed);
await last.data();
console.log(`prefill: ${(performance.now() - t0).toFixed(1)} ms`);
embed.dispose();
let memory0 = 0; // after the first step, when only one step's hidden state is alive
for (let s = 0; s < steps; s++) {
  // The next token's input: each sequence's last hidden state (a real model would sample a
  // token and embed it).
  const S = last.shape[1];
  const h = await last.data();
  const next = new Float32Array(B * dm);
  for (let b = 0; b < B; b++) next.set(h.subarray((b * S + S - 1) * dm, (b * S + S) * dm), b * dm);
  const input = la.tensor(next, { shape: [B, 1, dm], backend });
  last.dispose();
  t0 = performance.now();
  last = forward(input);
  await last.data();
  input.dispose();
  const ms = performance.now() - t0;
  const mem = backend.memory().liveBytes;
  console.log(
    `step ${String(s + 1).padStart(3)}: ${caches[0].lens[0]} tokens, ${ms.toFixed(2)} ms, ` +
      `device memory ${(mem / 2 ** 20).toFixed(2)} MiB`,
  );
  // Pages were allocated up front: only the small block tables may come and go.
  if (s === 0) memory0 = mem;
  if (Math.abs(mem - memory0) > 64 * 1024) {
    throw new Error(`device memory grew from ${memory0} to ${mem} bytes`);
  }
}

// Lean over the cache must agree with naive attention over the same cache.
const q = la.randn([B, Hq, 1, D], { seed: 99, backend });
const lean = await la.leanAttention(q, caches[0]).data();
const naive = await la.naiveAttention(q, caches[0]).data();
const err = lean.reduce((m, y, i) => Math.max(m, Math.abs(y - naive[i])), 0);
console.log(`max |lean − naive| over layer 0's cache of ${caches[0].lens[0]} tokens: ${err}`);
if (!(err < 1e-4)) throw new Error(`lean and naive disagree by ${err}`);
for (const t of [q, last]) t.dispose();
for (const c of caches) c.dispose();
for (const w of W) for (const t of Object.values(w)) t.dispose();
