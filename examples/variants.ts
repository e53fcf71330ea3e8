/**
 * Attention variants of real models on one decode step over a KV cache: a sliding window
 * (Mistral: "a window of W tokens"), Gemma 2's soft-cap, gpt-oss's sinks, ALiBi (MPT, BLOOM),
 * and rotary embedding applied to q and k first (Llama). Flash-decoding and lean agree with
 * naive for each; the window reads only the keys it sees.
 *
 *     deno run -A examples/variants.ts [--gpu] [--n 3000] [--window 512]
 */
import * as la from "../mod.ts";
import { exampleBackend, flag } from "./_args.ts";

const backend = await exampleBackend();
const [B, Hq, Hkv, D] = [1, 8, 2, 64];
const N = Number(flag("n", "3000"));
const W = Number(flag("window", "512"));

// Rotary embedding at the tokens' positions: the new query sits at N − 1, keys at 0..N−1.
const q0 = la.randn([B, Hq, 1, D], { seed: 1, backend });
const k0 = la.randn([B, Hkv, N, D], { seed: 2, backend });
const q = la.rope(q0, { offset: N - 1 });
const k = la.rope(k0);
const v = la.randn([B, Hkv, N, D], { seed: 3, backend });

const variants: [string, la.LeanOptions & { returnLse?: false }][] = [
  [`window of ${W} tokens`, { window: la.windowFromModelCard(W) }],
  ["soft-cap 50", { softcap: 50 }],
  ["sinks", { sinks: Array.from({ length: Hq }, (_, h) => h / Hq) }],
  ["ALiBi", { alibiSlopes: Array.from({ length: Hq }, (_, h) => 2 ** (-(h + 1))) }],
];
console.log(`decode over ${N} keys (rope'd q and k), q [${B}, ${Hq}, 1, ${D}] on ${backend.name}`);
for (const [name, opts] of variants) {
  const naive = await la.naiveAttention(q, k, v, opts).data();
  const diff = (x: Float32Array) => x.reduce((m, y, i) => Math.max(m, Math.abs(y - naive[i])), 0);
  const fd = await la.flashAttention(q, k, v, { ...opts, numSplits: 4 }).data();
  const lean = await la.leanAttention(q, k, v, opts).data();
  const keys = la.leanAttentionPlan(q, k, v, opts).schedule.units.reduce((a, u) => a + u.keys, 0);
  console.log(
    `${name.padEnd(22)} max |flash-decoding − naive| ${diff(fd).toExponential(2)}, ` +
      `max |lean − naive| ${diff(lean).toExponential(2)}; lean reads ${keys} key rows`,
  );
}
for (const t of [q0, k0, q, k, v]) t.dispose();
