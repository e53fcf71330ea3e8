/**
 * Causal prefill: a prompt of `Sq` new tokens attends to the cache plus itself, each token
 * seeing only the keys before it (bottom-right causal: query i sees keys < len − Sq + i + 1).
 * Flash and lean agree with naive; the last query row equals a decode step over all keys.
 *
 *     deno run -A examples/causal_prefill.ts [--gpu] [--sq 48] [--n 400]
 */
import * as la from "../mod.ts";
import { exampleBackend, flag } from "./_args.ts";

const backend = await exampleBackend();
const [B, Hq, Hkv, D] = [2, 4, 2, 32];
const Sq = Number(flag("sq", "48"));
const N = Number(flag("n", "400"));
const kvLens = [N, N - 123]; // ragged: the second sequence is shorter

const q = la.randn([B, Hq, Sq, D], { seed: 1, backend });
const k = la.randn([B, Hkv, N, D], { seed: 2, backend });
const v = la.randn([B, Hkv, N, D], { seed: 3, backend });
const opts = { causal: true, kvLens };

const naive = await la.naiveAttention(q, k, v, opts).data();
const maxDiff = (x: Float32Array) => x.reduce((m, y, i) => Math.max(m, Math.abs(y - naive[i])), 0);
const flash = await la.flashAttention(q, k, v, opts).data();
const lean = await la.leanAttention(q, k, v, opts).data();
console.log(`causal prefill: q [${B}, ${Hq}, ${Sq}, ${D}], kvLens [${kvLens}] on ${backend.name}`);
console.log(`max |flash − naive| = ${maxDiff(flash).toExponential(2)}`);
console.log(`max |lean − naive|  = ${maxDiff(lean).toExponential(2)}`);

// The last prompt token sees every key of its sequence: the same as one decode step.
const last = new Float32Array(B * Hq * D);
for (let bh = 0; bh < B * Hq; bh++) {
  last.set(naive.subarray(((bh + 1) * Sq - 1) * D, (bh + 1) * Sq * D), bh * D);
}
const qv = await q.data();
const lastQ = new Float32Array(B * Hq * D);
for (let bh = 0; bh < B * Hq; bh++) {
  lastQ.set(qv.subarray(((bh + 1) * Sq - 1) * D, (bh + 1) * Sq * D), bh * D);
}
const qLast = la.tensor(lastQ, { shape: [B, Hq, 1, D], backend });
const decode = await la.leanAttention(qLast, k, v, { kvLens }).data();
const lastDiff = decode.reduce((m, y, i) => Math.max(m, Math.abs(y - last[i])), 0);
console.log(`max |last prefill row − decode step| = ${lastDiff.toExponential(2)}`);
if (!(maxDiff(flash) < 1e-5 && maxDiff(lean) < 1e-5 && lastDiff < 1e-5)) Deno.exit(1);
