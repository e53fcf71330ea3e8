/**
 * mergeAttentionStates: attention over all keys equals the merge of attention over any
 * partition of the keys, in any order and grouping; the identity (lse = −∞) changes nothing
 * and never makes NaN; D = 0 still merges the lse. Bad states: tests/bad_input_merge_test.ts.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import type { Backend } from "../backends/backend.ts";
import { full, tensor, zeros } from "../tensor/creation.ts";
import { normals } from "../tensor/random.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { type AttentionState, mergeAttentionStates } from "../attention/merge.ts";
import { describeBackends, numRuns } from "./_backends.ts";
import { maxAbs, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { compareIeee } from "./regress/cases.ts";

/** Keys `keys` of k/v `[B, H, N, D]` (host arrays) as a new tensor `[B, H, keys.length, D]`. */
function gather(
  x: Float32Array,
  B: number,
  H: number,
  N: number,
  D: number,
  keys: number[],
  backend: Backend,
): Tensor {
  const n = keys.length;
  const out = new Float32Array(B * H * n * D);
  for (let bh = 0; bh < B * H; bh++) {
    keys.forEach((j, i) =>
      out.set(x.subarray((bh * N + j) * D, (bh * N + j + 1) * D), (bh * n + i) * D)
    );
  }
  return tensor(out, { shape: [B, H, n, D], backend });
}

/** Merges `states` along a random binary tree over a random order; `pick` drives the choices. */
function mergeTree(states: AttentionState[], pick: () => number): AttentionState {
  if (states.length === 1) return mergeAttentionStates(states);
  // Sometimes merge a whole group at once, sometimes pairwise.
  if (pick() < 0.3) return mergeAttentionStates(states);
  const cut = 1 + Math.floor(pick() * (states.length - 1));
  return mergeAttentionStates([
    mergeTree(states.slice(0, cut), pick),
    mergeTree(states.slice(cut), pick),
  ]);
}

describeBackends(
  "merge of a random key partition equals attention over all keys",
  async (backend) => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          B: fc.integer({ min: 1, max: 3 }),
          Hkv: fc.integer({ min: 1, max: 3 }),
          group: fc.integer({ min: 1, max: 3 }),
          Sq: fc.integer({ min: 1, max: 3 }),
          N: fc.integer({ min: 1, max: 300 }),
          D: fc.integer({ min: 1, max: 40 }),
          parts: fc.integer({ min: 1, max: 6 }),
          seed: fc.integer({ min: 1, max: 1_000_000 }),
          choices: fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), {
            minLength: 64,
            maxLength: 64,
          }),
          viaLean: fc.boolean(),
        }),
        async (c) => {
          const Hq = c.Hkv * c.group;
          const qh = normals(c.B * Hq * c.Sq * c.D, c.seed);
          const kh = normals(c.B * c.Hkv * c.N * c.D, c.seed + 1);
          const vh = normals(c.B * c.Hkv * c.N * c.D, c.seed + 2);
          let at = 0;
          const pick = () => c.choices[at++ % c.choices.length];
          // Each key goes to a random part; a part may get none (then it is the identity).
          const owner = Array.from({ length: c.N }, () => Math.floor(pick() * c.parts));
          const q = tensor(qh, { shape: [c.B, Hq, c.Sq, c.D], backend });
          const states: AttentionState[] = [];
          for (let p = 0; p < c.parts; p++) {
            const keys = owner.flatMap((o, j) => (o === p ? [j] : []));
            const empty = keys.length === 0;
            const use = empty ? [0] : keys;
            const k = gather(kh, c.B, c.Hkv, c.N, c.D, use, backend);
            const v = gather(vh, c.B, c.Hkv, c.N, c.D, use, backend);
            const opts = {
              returnLse: true as const,
              kvLens: empty ? Array(c.B).fill(0) : undefined,
            };
            states.push(
              c.viaLean
                ? leanAttention(q, k, v, { ...opts, tileSize: 7, grid: 3 })
                : flashAttention(q, k, v, { ...opts, blockN: 16, numSplits: 2 }),
            );
          }
          // Random order, then a random grouping.
          for (let i = states.length - 1; i > 0; i--) {
            const j = Math.floor(pick() * (i + 1));
            [states[i], states[j]] = [states[j], states[i]];
          }
          const merged = mergeTree(states, pick);
          const ref = referenceAttention({
            q: qh,
            k: kh,
            v: vh,
            B: c.B,
            Hq,
            Hkv: c.Hkv,
            Sq: c.Sq,
            N: c.N,
            D: c.D,
          });
          const out = await merged.out.data();
          const lse = await merged.lse.data();
          assertEquals(merged.out.shape, [c.B, Hq, c.Sq, c.D]);
          assertEquals(merged.lse.shape, [c.B, Hq, c.Sq]);
          const grow = Math.max(1, Math.log2(c.N) / 4) * (1 + c.parts / 4);
          const tolOut = 1e-5 * Math.max(1e-3, maxAbs(ref.out), ref.mag) * grow;
          const tolLse = 1e-5 * Math.max(1, maxAbs(ref.lse)) * grow;
          const eo = maxAbsDiff(out, ref.out);
          const el = maxAbsDiff(lse, ref.lse);
          assert(eo <= tolOut, `out error ${eo} > ${tolOut}`);
          assert(el <= tolLse, `lse error ${el} > ${tolLse}`);
        },
      ),
      { numRuns: numRuns(backend, 60) },
    );
  },
);

describeBackends("the identity (lse = −∞) changes nothing and makes no NaN", async (backend) => {
  const shape = [2, 3, 5];
  const out = tensor(normals(30, 3), { shape, backend });
  const lse = tensor(normals(6, 4).map((x) => 3 * x), { shape: [2, 3], backend });
  const id = { out: zeros(shape, { backend }), lse: full([2, 3], -Infinity, { backend }) };
  for (const list of [[{ out, lse }, id], [id, { out, lse }, id], [id, id, { out, lse }]]) {
    const m = mergeAttentionStates(list);
    const o = await m.out.data();
    const l = await m.lse.data();
    const want = await out.data();
    const wantLse = await lse.data();
    assert(maxAbsDiff(o, want) <= 1e-6 * maxAbs(want), "out changed by the identity");
    assert(maxAbsDiff(l, wantLse) <= 1e-6 * maxAbs(wantLse), "lse changed by the identity");
  }
  const none = mergeAttentionStates([id, id, id]);
  assert((await none.out.data()).every((x) => x === 0), "identities merge to out 0");
  assert((await none.lse.data()).every((x) => x === -Infinity), "identities merge to lse −∞");
  // Row-wise: only some rows empty in one state.
  const lseMixed = tensor([-Infinity, 0.5, -Infinity, 2, 1, -Infinity], { shape: [2, 3], backend });
  const mixed = mergeAttentionStates([{ out, lse: lseMixed }, id]);
  const mo = await mixed.out.data();
  const ml = await mixed.lse.data();
  assert(mo.every(Number.isFinite) && ml.every((x) => !Number.isNaN(x)), "NaN from −∞");
  assertEquals(Array.from(ml).map((x) => x === -Infinity), [true, false, true, false, false, true]);
});

describeBackends("merging with itself adds ln 2 to the lse and keeps out", async (backend) => {
  const out = tensor(normals(4 * 16, 9), { shape: [4, 16], backend });
  const lse = tensor(normals(4, 10), { shape: [4], backend });
  const m = mergeAttentionStates([{ out, lse }, { out, lse }]);
  const l0 = await lse.data();
  const l = await m.lse.data();
  const o0 = await out.data();
  assert(maxAbsDiff(await m.out.data(), o0) <= 1e-6 * maxAbs(o0));
  assert(maxAbsDiff(l, l0.map((x) => x + Math.LN2)) <= 1e-6 * (1 + maxAbs(l0)));
});

describeBackends("float16 outs merge to float16", async (backend) => {
  const a = tensor(normals(24, 1), { shape: [2, 12], dtype: "float16", backend });
  const b = tensor(normals(24, 2), { shape: [2, 12], dtype: "float16", backend });
  const la = tensor([0.3, -1], { shape: [2], backend });
  const lb = tensor([1.2, -0.5], { shape: [2], backend });
  const m = mergeAttentionStates([{ out: a, lse: la }, { out: b, lse: lb }]);
  assertEquals(m.out.dtype, "float16");
  assertEquals(m.lse.dtype, "float32");
  const [av, bv, lav, lbv] = [await a.data(), await b.data(), await la.data(), await lb.data()];
  const want = new Float64Array(24);
  for (let r = 0; r < 2; r++) {
    const mx = Math.max(lav[r], lbv[r]);
    const wa = Math.exp(lav[r] - mx);
    const wb = Math.exp(lbv[r] - mx);
    for (let d = 0; d < 12; d++) {
      want[r * 12 + d] = (wa * av[r * 12 + d] + wb * bv[r * 12 + d]) / (wa + wb);
    }
  }
  const err = maxAbsDiff(await m.out.data(), want);
  assert(err <= 2 ** -11 * maxAbs(want) + 1e-6, `f16 merge error ${err}`);
});

describeBackends("mergeAttentionStates with D = 0 still merges the lse", async (backend) => {
  // Attention needs D ≥ 1, but merge accepts outs [..., 0]: the LSEs must merge regardless.
  const a = { out: tensor([], { shape: [2, 0], backend }), lse: tensor([0.5, -1], { backend }) };
  const b = {
    out: tensor([], { shape: [2, 0], backend }),
    lse: tensor([0.5, -Infinity], { backend }),
  };
  const r = mergeAttentionStates([a, b]);
  assert(r.out.shape.join() === "2,0" && r.lse.shape.join() === "2");
  const got = await r.lse.data();
  const want = [0.5 + Math.log(2), -1];
  assert(compareIeee(got, want, 1e-6) === null, `lse ${got}, want ${want}`);
  for (const t of [a.out, a.lse, b.out, b.lse, r.out, r.lse]) t.dispose();
});
