/**
 * Schedules under a sliding window (VARIANTS.md, "What may be skipped"): every unit covers
 * exactly the hull of the keys its query rows can see — no tile outside it — and the tiles of
 * every unit are covered exactly once, for lean (any grid) and split (any numSplits) schedules.
 * Also: the plan cache key holds the variant but not the sink/slope values.
 */
import { ok as assert, strictEqual } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { leanSchedule, splitSchedule } from "../schedule/lean_schedule.ts";
import { flashAttentionPlan } from "../attention/flash.ts";
import { randn } from "../tensor/creation.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";

const planArb = fc.record({
  batch: fc.integer({ min: 1, max: 3 }),
  kvHeads: fc.integer({ min: 1, max: 2 }),
  lens: fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 3, maxLength: 3 }),
  extra: fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 3, maxLength: 3 }),
  Sq: fc.integer({ min: 1, max: 40 }),
  qBlocks: fc.integer({ min: 1, max: 5 }),
  tileSize: fc.integer({ min: 1, max: 64 }),
  left: fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }),
  right: fc.option(fc.integer({ min: 0, max: 120 }), { nil: undefined }),
  causal: fc.boolean(),
  keyOffset: fc.integer({ min: 0, max: 100 }),
  grid: fc.integer({ min: 1, max: 30 }),
  numSplits: fc.integer({ min: 1, max: 7 }),
});

Deno.test("a windowed schedule covers exactly the visible key hull of every unit", () => {
  const seed = Date.now() % 1_000_000;
  console.log(`  fast-check seed ${seed}`);
  fc.assert(
    fc.property(planArb, (d) => {
      const kvLens = d.lens.slice(0, d.batch);
      // A part run: positions align to longer lengths and local key 0 sits at keyOffset.
      const positionLens = kvLens.map((n, b) => n + d.keyOffset + d.extra[b]);
      const window = { left: d.left ?? Infinity, right: d.right ?? Infinity };
      const common = {
        batch: d.batch,
        kvHeads: d.kvHeads,
        kvLens,
        qBlocks: d.qBlocks,
        tileSize: d.tileSize,
        window,
        Sq: d.Sq,
        causal: d.causal,
        positionLens,
        keyOffset: d.keyOffset,
      };
      const schedules = [
        leanSchedule({ ...common, grid: d.grid }),
        splitSchedule({ ...common, numSplits: d.numSplits }),
      ];
      const rowsPerBlock = Math.ceil(d.Sq / d.qBlocks);
      for (const s of schedules) {
        s.units.forEach((u, ui) => {
          // Brute force: the keys some row of the unit's query block sees.
          let lo = Infinity, hi = -Infinity;
          for (
            let i = u.qBlock * rowsPerBlock;
            i < Math.min(d.Sq, (u.qBlock + 1) * rowsPerBlock);
            i++
          ) {
            const p = positionLens[u.b] - d.Sq + i;
            for (let j = 0; j < kvLens[u.b]; j++) {
              const kp = d.keyOffset + j;
              if (d.causal && kp > p) continue;
              if (kp < p - window.left || kp > p + window.right) continue;
              lo = Math.min(lo, j);
              hi = Math.max(hi, j + 1);
            }
          }
          // Without a window, every unit covers all its valid keys (as before windows).
          const windowed = d.left !== undefined || d.right !== undefined;
          if (!windowed) [lo, hi] = [0, kvLens[u.b]];
          const keys = hi > lo ? hi - lo : 0;
          strictEqual(u.keys, keys, `${s.kind} unit ${ui}: keys`);
          if (keys > 0) strictEqual(u.keyStart, lo, `${s.kind} unit ${ui}: keyStart`);
          strictEqual(u.tiles, Math.ceil(keys / d.tileSize));
          // Every tile of the unit is covered exactly once, and no segment reaches past it.
          const seen = new Array(u.tiles).fill(0);
          for (const w of s.workers) {
            for (const g of w) {
              if (g.unit !== ui) continue;
              assert(g.tileStart >= 0 && g.tileEnd <= u.tiles, `${s.kind}: tile outside`);
              for (let t = g.tileStart; t < g.tileEnd; t++) seen[t]++;
            }
          }
          assert(seen.every((n) => n === 1), `${s.kind} unit ${ui}: tiles covered ${seen}`);
        });
      }
    }),
    { numRuns: 300, seed },
  );
});

Deno.test("the plan cache key holds the variant, not the sink or slope values", () => {
  const backend = cpu();
  const q = randn([1, 2, 1, 8], { seed: 1, backend });
  const k = randn([1, 2, 40, 8], { seed: 2, backend });
  const a = flashAttentionPlan(q, k, k, { sinks: [1, 2], alibiSlopes: [0.1, 0.2] });
  const b = flashAttentionPlan(q, k, k, { sinks: [3, 4], alibiSlopes: [0.3, 0.4] });
  strictEqual(a, b, "same variant, other values: one cached plan");
  const others = [
    flashAttentionPlan(q, k, k, { sinks: [1, 2] }),
    flashAttentionPlan(q, k, k, { sinks: [1, 2], alibiSlopes: [0.1, 0.2], softcap: 30 }),
    flashAttentionPlan(q, k, k, { sinks: [1, 2], alibiSlopes: [0.1, 0.2], window: { left: 5 } }),
    flashAttentionPlan(q, k, k, { sinks: [1, 2], alibiSlopes: [0.1, 0.2], window: { right: 5 } }),
    flashAttentionPlan(q, k, k),
  ];
  for (const o of others) assert(o !== a, "another variant: another plan");
  strictEqual(flashAttentionPlan(q, k, k, { window: {} }), flashAttentionPlan(q, k, k));
  strictEqual(flashAttentionPlan(q, k, k, { window: { left: 5 } }).schedule.units[0].keys, 6);
  q.dispose();
  k.dispose();
});
