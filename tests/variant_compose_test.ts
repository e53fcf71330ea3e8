/**
 * Variants that compose: split-and-merge with sinks equals one call (the sink merged exactly
 * once); other libraries' window conventions map to the same visible keys as their documented
 * formulas (as a −∞ bias); naive scales q before the product (#19: scale·(q·k) overflowing
 * float32 where (scale·q)·k does not).
 */
import { ok as assert, strictEqual } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import { randn, tensor } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { naiveAttention } from "../attention/naive.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import {
  windowFromFlashAttention,
  windowFromModelCard,
  windowFromOnnxRuntime,
} from "../attention/window.ts";
import type { AttentionWindow } from "../attention/_variant.ts";
import { describeBackends } from "./_backends.ts";
import { maxAbs, maxAbsDiff, referenceAttention } from "../testing/reference.ts";

/** Keys `[n0, n1)` of a `[B, H, N, D]` tensor, as a new tensor. */
async function slice(t: Tensor, n0: number, n1: number, backend: Backend): Promise<Tensor> {
  const [B, H, N, D] = t.shape;
  const x = await t.data();
  const y = new Float32Array(B * H * (n1 - n0) * D);
  for (let bh = 0; bh < B * H; bh++) {
    y.set(x.subarray((bh * N + n0) * D, (bh * N + n1) * D), bh * (n1 - n0) * D);
  }
  return tensor(y, { shape: [B, H, n1 - n0, D], backend });
}

describeBackends("attention with sinks over a cut KV cache: merge once = one call", async (b) => {
  const B = 2, Hkv = 2, Hq = 4, Sq = 2, N = 70, D = 16, cut = 33;
  const sinks = [0.5, -1, 2, 4];
  const q = randn([B, Hq, Sq, D], { seed: 11, backend: b });
  const k = randn([B, Hkv, N, D], { seed: 12, backend: b });
  const v = randn([B, Hkv, N, D], { seed: 13, backend: b });
  const parts = [
    [await slice(k, 0, cut, b), await slice(v, 0, cut, b)],
    [await slice(k, cut, N, b), await slice(v, cut, N, b)],
  ];
  // The pieces without the sink (plain flash runs on every backend), then the sink once.
  const states = parts.map(([kp, vp]) => flashAttention(q, kp, vp, { returnLse: true }));
  const merged = mergeAttentionStates(states, { sinks });
  const sinksT = tensor(sinks, { backend: b });
  const mergedT = mergeAttentionStates(states, { sinks: sinksT });
  const one = naiveAttention(q, k, v, { sinks, returnLse: true });
  const ref = referenceAttention({
    q: await q.data(),
    k: await k.data(),
    v: await v.data(),
    B,
    Hq,
    Hkv,
    Sq,
    N,
    D,
    sinks,
  });
  const tol = 1e-5 * Math.max(1, maxAbs(ref.lse)) * 2;
  for (const [name, r] of [["merge", merged], ["merge (tensor sinks)", mergedT], ["one", one]]) {
    const out = await (r as typeof one).out.data();
    const lse = await (r as typeof one).lse.data();
    assert(maxAbsDiff(out, ref.out) <= tol, `${name}: out ${maxAbsDiff(out, ref.out)}`);
    assert(maxAbsDiff(lse, ref.lse) <= tol, `${name}: lse ${maxAbsDiff(lse, ref.lse)}`);
  }
  if (b.name === "cpu") {
    // The fused kernels fold the sink once too (a cut lean unit merges it after its pieces).
    const lean = leanAttention(q, k, v, { sinks, returnLse: true, tileSize: 8, grid: 7 });
    assert(maxAbsDiff(await lean.lse.data(), ref.lse) <= tol, "lean with sinks");
    lean.out.dispose();
    lean.lse.dispose();
  }
  // No keys at all: the sink alone (out 0, lse = z).
  const empty = naiveAttention(q, k, v, { sinks, kvLens: [0, 0], returnLse: true });
  const none = mergeAttentionStates([empty], {});
  strictEqual(maxAbs(await empty.out.data()), 0);
  assert(
    maxAbsDiff(await empty.lse.data(), [0, 1].flatMap(() => sinks.flatMap((z) => [z, z]))) === 0,
  );
  const list = [q, k, v, sinksT, ...parts.flat(), merged.out, merged.lse, mergedT.out];
  list.push(mergedT.lse, one.out, one.lse, empty.out, empty.lse, none.out, none.lse);
  for (const s of states) list.push(s.out, s.lse);
  for (const t of list) t.dispose();
});

describeBackends("other libraries' window conventions map to the same visible keys", async (b) => {
  const B = 1, H = 2, Sq = 5, N = 40, D = 8;
  const q = randn([B, H, Sq, D], { seed: 21, backend: b });
  const k = randn([B, H, N, D], { seed: 22, backend: b });
  const v = randn([B, H, N, D], { seed: 23, backend: b });
  /** A −∞ bias `[Sq, N]` hiding what `visible(i, j)` rejects (query i, key j). */
  const biasOf = (visible: (i: number, j: number) => boolean) => {
    const x = new Float32Array(Sq * N);
    for (let i = 0; i < Sq; i++) {
      for (let j = 0; j < N; j++) {
        x[i * N + j] = visible(i, j) ? 0 : -Infinity;
      }
    }
    return tensor(x, { shape: [Sq, N], backend: b });
  };
  const cases: [string, AttentionWindow, boolean, (i: number, j: number) => boolean][] = [
    // FlashAttention: query i attends keys in [i + N − Sq − l, i + N − Sq + r], inclusive.
    [
      "FlashAttention (7, 2)",
      windowFromFlashAttention(7, 2),
      false,
      (i, j) => j >= i + N - Sq - 7 && j <= i + N - Sq + 2,
    ],
    ["FlashAttention (-1, 0)", windowFromFlashAttention(-1, 0), false, (i, j) => j <= i + N - Sq],
    // ONNX Runtime GQA: causal; query at p sees keys p − W .. p.
    [
      "ONNX Runtime W = 6",
      windowFromOnnxRuntime(6),
      true,
      (i, j) => j <= i + N - Sq && j >= i + N - Sq - 6,
    ],
    // A model card's "window of W tokens" counts the current token: W keys end at p.
    [
      "model card W = 6",
      windowFromModelCard(6),
      true,
      (i, j) => j <= i + N - Sq && j > i + N - Sq - 6,
    ],
  ];
  const run = b.name === "cpu" ? flashAttention : naiveAttention;
  for (const [name, window, causal, visible] of cases) {
    const bias = biasOf(visible);
    const a = run(q, k, v, { window, causal, returnLse: true });
    const m = naiveAttention(q, k, v, { bias, returnLse: true });
    const e = maxAbsDiff(await a.out.data(), await m.out.data());
    assert(e <= 1e-5, `${name}: ${JSON.stringify(window)} differs from the formula by ${e}`);
    for (const t of [bias, a.out, a.lse, m.out, m.lse]) t.dispose();
  }
  strictEqual(JSON.stringify(windowFromFlashAttention(-1, -1)), "{}");
  strictEqual(JSON.stringify(windowFromOnnxRuntime(-1)), "{}");
  for (const t of [q, k, v]) t.dispose();
});

describeBackends(
  "naive scales q before q·k (no float32 overflow the fused kernels avoid)",
  async (b) => {
    // #19: q = 1e19, k ≈ −1e19, D = 4: q·k ≈ −4e38 overflows float32, scale·q·k ≈ −2e38 does not.
    const B = 1, H = 1, Sq = 1, N = 3, D = 4;
    const qv = new Float32Array(D).fill(1e19);
    const kv = Float32Array.from(
      { length: N * D },
      (_, i) => -1e19 * (1 + 0.001 * Math.floor(i / D)),
    );
    const vv = Float32Array.from({ length: N * D }, (_, i) => i);
    const q = tensor(qv, { shape: [B, H, Sq, D], backend: b });
    const k = tensor(kv, { shape: [B, H, N, D], backend: b });
    const v = tensor(vv, { shape: [B, H, N, D], backend: b });
    const ref = referenceAttention({ q: qv, k: kv, v: vv, B, Hq: H, Hkv: H, Sq, N, D });
    assert(Number.isFinite(ref.lse[0]));
    for (
      const [name, r] of [
        ["naive", naiveAttention(q, k, v, { returnLse: true })],
        ["flash", flashAttention(q, k, v, { returnLse: true })],
        ["lean", leanAttention(q, k, v, { returnLse: true })],
      ] as const
    ) {
      const out = await r.out.data();
      const lse = await r.lse.data();
      assert(
        maxAbsDiff(out, ref.out) <= 1e-5 * maxAbs(ref.out),
        `${name}: out ${out} vs ${ref.out}`,
      );
      assert(
        Math.abs(lse[0] - ref.lse[0]) <= 1e-6 * Math.abs(ref.lse[0]),
        `${name}: lse ${lse[0]}`,
      );
      r.out.dispose();
      r.lse.dispose();
    }
    for (const t of [q, k, v]) t.dispose();
  },
);
