/**
 * Plan, then run: a call's plan is made once per description (shapes, dtypes, options,
 * lengths, K/V parts) and reused, it is inspectable, and running a cached plan on other
 * tensors gives the same bits as planning afresh.
 */
import { deepStrictEqual, ok as assert, strictEqual } from "node:assert/strict";
import {
  flashAttentionPlan,
  leanAttention,
  leanAttentionPlan,
  randn,
  renderSchedule,
  type Tensor,
} from "../mod.ts";
import { describeBackends } from "./_backends.ts";

describeBackends("plans are cached per description and inspectable", (backend) => {
  const q = randn([2, 4, 1, 16], { seed: 1, backend });
  const k = randn([2, 2, 300, 16], { seed: 2, backend });
  const v = randn([2, 2, 300, 16], { seed: 3, backend });
  try {
    const a = leanAttentionPlan(q, k, v, { kvLens: [300, 77] });
    strictEqual(leanAttentionPlan(q, k, v, { kvLens: [300, 77] }), a, "same description");
    assert(leanAttentionPlan(q, k, v, { kvLens: [300, 78] }) !== a, "other lengths");
    assert(leanAttentionPlan(q, k, v, { kvLens: [300, 77], tileSize: 32 }) !== a, "tile");
    strictEqual(a.algo, "lean");
    deepStrictEqual([...a.kvLens], [300, 77]);
    strictEqual(a.parts, null);
    strictEqual(a.runs.length, 1);
    strictEqual(a.runs[0].schedule, a.schedule);
    strictEqual(a.schedule.workers.length, a.schedule.plan.grid);
    assert(Object.isFrozen(a) && Object.isFrozen(a.runs), "shared plans are frozen");
    assert(renderSchedule(a.schedule).startsWith("<svg"), "renders");
    const f = flashAttentionPlan(q, k, v, { numSplits: 3 });
    strictEqual(f.algo, "flash-decoding");
    strictEqual(f.schedule.workers.length, 2 * 2 * 3);
    strictEqual(flashAttentionPlan(q, k, v, { numSplits: 1 }).algo, "flash");
  } finally {
    for (const t of [q, k, v]) t.dispose();
  }
});

describeBackends(
  "a cached plan run on other tensors equals a fresh plan, bit for bit",
  async (b) => {
    const make = (seed: number) => [
      randn([3, 8, 1, 32], { seed, backend: b, dtype: "float16" }),
      randn([3, 2, 257, 32], { seed: seed + 1, backend: b, dtype: "float16" }),
      randn([3, 2, 257, 32], { seed: seed + 2, backend: b, dtype: "float16" }),
    ];
    const first = make(10);
    const second = make(20);
    const kvLens = [257, 3, 130];
    try {
      // Prime the cache with the first tensors; the second set reuses that plan.
      (leanAttention(first[0], first[1], first[2], { kvLens }) as Tensor).dispose();
      const cached = await leanAttention(second[0], second[1], second[2], { kvLens }).data();
      // The same schedule under another cache key (the default grid given explicitly).
      const grid =
        leanAttentionPlan(second[0], second[1], second[2], { kvLens }).schedule.plan.grid;
      const fresh = await leanAttention(second[0], second[1], second[2], { kvLens, grid }).data();
      deepStrictEqual(cached, fresh);
    } finally {
      for (const t of [...first, ...second]) t.dispose();
    }
  },
);

describeBackends("the plan cache is bounded: old plans are made again", (backend) => {
  const q = randn([1, 2, 1, 8], { seed: 1, backend });
  const k = randn([1, 2, 200, 8], { seed: 2, backend });
  try {
    const first = leanAttentionPlan(q, k, k, { kvLens: [1] });
    for (let n = 2; n <= 150; n++) leanAttentionPlan(q, k, k, { kvLens: [n] });
    assert(leanAttentionPlan(q, k, k, { kvLens: [1] }) !== first, "evicted and remade");
    const recent = leanAttentionPlan(q, k, k, { kvLens: [150] });
    strictEqual(leanAttentionPlan(q, k, k, { kvLens: [150] }), recent, "recent one kept");
  } finally {
    q.dispose();
    k.dispose();
  }
});
