/**
 * The schedules as data (pure, no backend): every tile exactly once, contiguous runs, lean
 * loads within one tile, host/finishing flags and partial slots consistent with the cuts,
 * units without keys left out; the split heuristic; the SVG rendering.
 */
import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import {
  invariantSchedule,
  type LeanSchedule,
  leanSchedule,
  type LeanSegment,
  splitSchedule,
} from "../schedule/lean_schedule.ts";
import { numSplitsHeuristic } from "../schedule/split_heuristic.ts";
import {
  INVARIANT_CHUNK_KEYS,
  INVARIANT_MAX_CHUNK_KEYS,
  INVARIANT_PIECES,
  invariantChunkKeys,
  pieceRuleKey,
  smallestPiece,
} from "../schedule/limits.ts";
import { renderSchedule } from "../schedule/render_schedule.ts";
import { ArgumentError, LimitError } from "../tensor/errors.ts";

const planArb = fc.record({
  batch: fc.integer({ min: 1, max: 6 }),
  kvHeads: fc.integer({ min: 1, max: 5 }),
  qBlocks: fc.integer({ min: 1, max: 3 }),
  tileSize: fc.integer({ min: 1, max: 128 }),
  lens: fc.array(
    fc.oneof(
      fc.constant(0),
      fc.constant(1),
      fc.integer({ min: 0, max: 300 }),
      fc.integer({ min: 0, max: 5000 }),
    ),
    { minLength: 6, maxLength: 6 },
  ),
  gridPick: fc.tuple(
    fc.boolean(),
    fc.integer({ min: 1, max: 16 }),
    fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  ),
  numSplits: fc.integer({ min: 1, max: 40 }),
});

type DrawnPlan = typeof planArb extends fc.Arbitrary<infer T> ? T : never;

function base(d: DrawnPlan) {
  return {
    batch: d.batch,
    kvHeads: d.kvHeads,
    qBlocks: d.qBlocks,
    tileSize: d.tileSize,
    kvLens: d.lens.slice(0, d.batch),
  };
}

function leanOf(d: DrawnPlan): LeanSchedule {
  const p = base(d);
  const tiles = p.kvLens.reduce((a, n) => a + Math.ceil(n / p.tileSize), 0) * p.kvHeads *
    p.qBlocks;
  const [small, g, f] = d.gridPick;
  return leanSchedule({ ...p, grid: small ? g : 1 + Math.floor(f * (tiles + 5)) });
}

/** The invariants every schedule satisfies, whatever its kind. */
function checkCommon(s: LeanSchedule): void {
  const { batch, kvHeads, qBlocks, tileSize, kvLens } = s.plan;
  assertEquals(s.units.length, batch * kvHeads * qBlocks);
  s.units.forEach((u, i) => {
    assertEquals(i, ((u.b * kvHeads) + u.kvHead) * qBlocks + u.qBlock, "unit index");
    assertEquals(u.keys, kvLens[u.b]);
    assertEquals(u.tiles, Math.ceil(u.keys / tileSize));
  });
  assertEquals(s.totalTiles, s.units.reduce((a, u) => a + u.tiles, 0));
  // Every tile exactly once.
  const seen = s.units.map((u) => new Uint8Array(u.tiles));
  const pieces: LeanSegment[][] = s.units.map(() => []);
  for (const run of s.workers) {
    for (const seg of run) {
      const u = s.units[seg.unit];
      assert(u.tiles > 0, `unit ${seg.unit} has no keys but is visited`);
      assert(
        seg.tileStart >= 0 && seg.tileStart < seg.tileEnd && seg.tileEnd <= u.tiles,
        `bad segment ${JSON.stringify(seg)} of a unit with ${u.tiles} tiles`,
      );
      for (let t = seg.tileStart; t < seg.tileEnd; t++) {
        assertEquals(seen[seg.unit][t], 0, `tile ${t} of unit ${seg.unit} twice`);
        seen[seg.unit][t] = 1;
      }
      assertEquals(seg.host, seg.tileStart === 0, "host flag");
      assertEquals(seg.finishing, seg.tileEnd === u.tiles, "finishing flag");
      pieces[seg.unit].push(seg);
    }
  }
  seen.forEach((ts, u) => assert(ts.every((x) => x === 1), `unit ${u} has a tile nobody does`));
  // Partial slots: exactly the segments of units cut into ≥ 2 pieces, in tile order.
  const cutUnits = pieces.map((p, u) => (p.length >= 2 ? u : -1)).filter((u) => u >= 0);
  assertEquals(s.cuts.map((c) => c.unit), cutUnits, "cuts list the cut units in unit order");
  const slots: number[] = [];
  for (const cut of s.cuts) {
    const segs = pieces[cut.unit].slice().sort((a, b) => a.tileStart - b.tileStart);
    assertEquals(cut.partials, segs.map((g) => g.partial), "partials in tile order");
    assert(segs[0].host && segs[segs.length - 1].finishing, "a cut starts with its host");
    slots.push(...cut.partials);
  }
  assertEquals(slots.slice().sort((a, b) => a - b), slots.map((_, i) => i), "slots 0..n-1");
  assertEquals(s.numPartials, slots.length);
  for (const p of pieces) {
    if (p.length === 1) {
      assertEquals(p[0].partial, -1, "an uncut unit is written directly");
      assert(p[0].host && p[0].finishing);
    }
  }
}

Deno.test("lean schedule: every tile once, contiguous runs, loads within one tile", () => {
  fc.assert(
    fc.property(planArb, (d) => {
      const s = leanOf(d);
      assertEquals(s.kind, "lean");
      checkCommon(s);
      const G = s.plan.grid;
      assertEquals(s.workers.length, G);
      const loads = s.workers.map((r) => r.reduce((a, g) => a + g.tileEnd - g.tileStart, 0));
      assertEquals(loads.reduce((a, b) => a + b, 0), s.totalTiles);
      const lo = Math.floor(s.totalTiles / G);
      assert(loads.every((l) => l === lo || l === lo + 1), `loads ${loads} not within one tile`);
      // Contiguity: flattening the workers' runs walks the global tile list in order.
      const flat: [number, number][] = [];
      for (const run of s.workers) {
        for (const seg of run) {
          for (let t = seg.tileStart; t < seg.tileEnd; t++) flat.push([seg.unit, t]);
        }
      }
      const expected: [number, number][] = [];
      s.units.forEach((u, i) => {
        for (let t = 0; t < u.tiles; t++) expected.push([i, t]);
      });
      assertEquals(flat, expected);
      // Within a worker, consecutive segments continue where the last one stopped.
      for (const run of s.workers) {
        for (let i = 1; i < run.length; i++) {
          assert(run[i - 1].finishing && run[i].host, "a run moves on only at unit boundaries");
        }
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("invariantChunkKeys: the shortest power-of-two piece that cuts a sequence into at most 16", () => {
  const hi = INVARIANT_MAX_CHUNK_KEYS;
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1 << 24 }),
      fc.integer({ min: 1, max: 1 << 24 }),
      fc.constantFrom(undefined, 64, 256, 1024, 4096, hi),
      fc.constantFrom(1, 8, 16, 32, 1024),
      (a, b, shortest, most) => {
        const rule = shortest === undefined ? undefined : { shortest, most };
        const lo = shortest ?? INVARIANT_CHUNK_KEYS;
        const P = rule ? most : INVARIANT_PIECES;
        const c = invariantChunkKeys(a, rule);
        assert((c & (c - 1)) === 0 && c >= lo && c <= hi, `${a}: ${c}`);
        // At most INVARIANT_PIECES pieces unless the pieces are the longest; the shortest such.
        assert(c === hi || Math.ceil(a / c) <= P, `${a}: ${c}`);
        assert(c === lo || Math.ceil(a / (c / 2)) > P, `${a}: ${c}`);
        // Longer sequences never get shorter pieces.
        if (a <= b) assert(c <= invariantChunkKeys(b, rule), `${a} ≤ ${b}`);
      },
    ),
    { numRuns: 500 },
  );
  assertEquals([4096, 16384, 65536, 100_000, 1 << 20].map((n) => invariantChunkKeys(n)), [
    1024,
    1024,
    4096,
    8192,
    16384,
  ]);
  const r256 = { shortest: 256, most: 16 };
  assertEquals([1000, 4096, 8192, 16384].map((n) => invariantChunkKeys(n, r256)), [
    256,
    256,
    512,
    1024,
  ]);
  assertEquals([4096, 8192].map((n) => invariantChunkKeys(n, { shortest: 128, most: 32 })), [
    128,
    256,
  ]);
  for (
    const bad of [
      { shortest: 0, most: 16 },
      { shortest: -256, most: 16 },
      { shortest: 96, most: 16 },
      { shortest: 1.5, most: 16 },
      { shortest: NaN, most: 16 },
      { shortest: 2 * hi, most: 16 },
      { shortest: 256, most: 0 },
      { shortest: 256, most: 2.5 },
      { shortest: 256, most: 2000 },
      null,
    ]
  ) {
    throws(
      () => invariantChunkKeys(4096, bad as never),
      (e) => e instanceof ArgumentError && /shortest piece|most pieces/.test(e.message),
    );
  }
});

Deno.test("invariantChunkKeys: short units take the rule's short piece, longer ones the doubling rule", () => {
  // A rule of the kind of WebGPU's multi-row one (tuning.ts: there `under` is 2049): 512-key
  // pieces, 256 for units under 2048 keys.
  const rule = { shortest: 512, most: 16, shortUnits: { under: 2048, piece: 256 } };
  const plain = { shortest: 512, most: 16 };
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1 << 22 }),
      fc.integer({ min: 1, max: 1 << 22 }),
      (a, b) => {
        const c = invariantChunkKeys(a, rule);
        assertEquals(c, a < 2048 ? 256 : invariantChunkKeys(a, plain), `${a}`);
        // Still never shorter pieces for a longer sequence.
        if (a <= b) assert(c <= invariantChunkKeys(b, rule), `${a} ≤ ${b}`);
      },
    ),
    { numRuns: 300 },
  );
  assertEquals([1, 1024, 2047, 2048, 4096, 8192, 16384].map((n) => invariantChunkKeys(n, rule)), [
    256,
    256,
    256,
    512,
    512,
    512,
    1024,
  ]);
  for (
    const [su, what] of [
      [{ under: 2048, piece: 1024 }, /shortUnits\.piece.*got 1024/],
      [{ under: 2048, piece: 96 }, /shortUnits\.piece/],
      [{ under: 2048 }, /shortUnits\.piece.*got undefined/],
      [{ under: 0, piece: 256 }, /shortUnits\.under.*got 0/],
      [{ under: 1.5, piece: 256 }, /shortUnits\.under/],
      [5, /shortUnits\.under/],
    ] as const
  ) {
    throws(
      () => invariantChunkKeys(4096, { shortest: 512, most: 16, shortUnits: su as never }),
      (e) => e instanceof ArgumentError && what.test(e.message),
    );
  }
  assertEquals(smallestPiece(rule), 256);
  assertEquals(smallestPiece(plain), 512);
  assertEquals([pieceRuleKey(rule), pieceRuleKey(plain)], ["512/16<2048:256", "512/16"]);
});

Deno.test("invariant schedule: fixed pieces per unit, whatever the batch and grid", () => {
  fc.assert(
    fc.property(
      planArb,
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 40 }),
      fc.boolean(),
      (d, fixed, grid, byKeys) => {
        const p = base(d);
        // A fixed chunk, or one that is a function of the unit's own keys.
        const chunkOf = (keys: number) => byKeys ? 1 + ((keys >> 4) % fixed) : fixed;
        const chunkTiles = byKeys ? chunkOf : fixed;
        const s = invariantSchedule({ ...p, grid, chunkTiles });
        assertEquals(s.kind, "invariant");
        checkCommon(s);
        assertEquals(s.workers.length, grid);
        // Every segment is one whole piece: it starts at a multiple of chunkTiles and ends at
        // the next one or at the unit's end — positions of the unit's own keys only.
        const pieces = s.units.map(() => [] as [number, number][]);
        for (const run of s.workers) {
          for (const g of run) {
            const c = chunkOf(s.units[g.unit].keys);
            assertEquals(g.tileStart % c, 0, "a piece starts at a chunk boundary");
            assertEquals(
              g.tileEnd,
              Math.min(s.units[g.unit].tiles, g.tileStart + c),
              "a piece is one whole chunk",
            );
            pieces[g.unit].push([g.tileStart, g.tileEnd]);
          }
        }
        // No grid: one worker a piece, the same pieces.
        const each = invariantSchedule({ ...p, chunkTiles });
        checkCommon(each);
        const n = pieces.reduce((a, x) => a + x.length, 0);
        assertEquals(each.workers.length, Math.max(1, n));
        assert(each.workers.every((w) => w.length === (n === 0 ? 0 : 1)), "one piece a worker");
        // The same unit alone, in a batch of one with another grid: the same pieces.
        const u = s.units.findIndex((x) => x.tiles > 0);
        if (u < 0) return;
        const unit = s.units[u];
        const alone = invariantSchedule({
          batch: 1,
          kvHeads: 1,
          qBlocks: 1,
          tileSize: p.tileSize,
          kvLens: [unit.keys],
          grid: 1 + (grid % 3),
          chunkTiles,
        });
        const own = alone.workers.flat().map((g) => [g.tileStart, g.tileEnd]);
        assertEquals(pieces[u], own, "pieces of a unit alone");
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("split schedule: numSplits chunks of ceil(tiles / numSplits) per unit", () => {
  fc.assert(
    fc.property(planArb, (d) => {
      const s = splitSchedule({ ...base(d), numSplits: d.numSplits });
      assertEquals(s.kind, "split");
      checkCommon(s);
      assertEquals(s.workers.length, s.units.length * d.numSplits);
      s.units.forEach((u, i) => {
        const per = Math.ceil(u.tiles / d.numSplits);
        for (let c = 0; c < d.numSplits; c++) {
          const run = s.workers[i * d.numSplits + c];
          assert(run.length <= 1);
          if (run.length === 1) {
            assertEquals(run[0].unit, i);
            assertEquals(run[0].tileStart, c * per);
            assertEquals(run[0].tileEnd, Math.min(u.tiles, (c + 1) * per));
          } else {
            assert(c * per >= u.tiles, "only chunks past the end are empty");
          }
        }
      });
      if (d.numSplits === 1) assertEquals(s.cuts.length, 0, "numSplits 1 cuts nothing");
    }),
    { numRuns: 300 },
  );
});

Deno.test("named schedules", () => {
  // The example of leanSchedule's docs.
  const s = leanSchedule({ batch: 2, kvHeads: 1, kvLens: [300, 100], tileSize: 64, grid: 3 });
  assertEquals(s.workers.map((w) => w.map((g) => `${g.unit}:${g.tileStart}-${g.tileEnd}`)), [
    ["0:0-2"],
    ["0:2-4"],
    ["0:4-5", "1:0-2"],
  ]);
  assertEquals(s.cuts, [{ unit: 0, partials: [0, 1, 2] }]);
  // All sequences empty: nothing to do, nobody works, nothing to merge.
  const empty = leanSchedule({ batch: 3, kvHeads: 2, kvLens: [0, 0, 0], tileSize: 8, grid: 4 });
  assertEquals(empty.totalTiles, 0);
  assert(empty.workers.every((w) => w.length === 0));
  assertEquals(empty.cuts.length, 0);
  // More workers than tiles: the extra ones are idle, nobody splits a tile.
  const few = leanSchedule({ batch: 1, kvHeads: 1, kvLens: [10], tileSize: 4, grid: 7 });
  assertEquals(few.workers.filter((w) => w.length).length, 3);
  // One worker: every unit whole, in order.
  const one = leanSchedule({ batch: 3, kvHeads: 2, kvLens: [5, 0, 70], tileSize: 8, grid: 1 });
  assertEquals(one.workers[0].map((g) => g.unit), [0, 1, 4, 5]);
  assertEquals(one.cuts.length, 0);
  // Bad plans name the field.
  throws(
    () => leanSchedule({ batch: 2, kvHeads: 1, kvLens: [1], tileSize: 4, grid: 1 }),
    (e: unknown) => e instanceof ArgumentError && e.message.includes("kvLens"),
  );
  throws(
    () => leanSchedule({ batch: 1, kvHeads: 1, kvLens: [1], tileSize: 4, grid: 0 }),
    (e: unknown) => e instanceof ArgumentError && e.message.includes("grid"),
  );
  throws(
    () => splitSchedule({ batch: 1, kvHeads: 1, kvLens: [-1], tileSize: 4, numSplits: 1 }),
    (e: unknown) => e instanceof ArgumentError && e.message.includes("kvLens"),
  );
});

Deno.test("split heuristic follows FlashAttention-2's rule", () => {
  // Enough work items (≥ 80 % of workers): no split.
  assertEquals(numSplitsHeuristic({ workItems: 87, workers: 108, keyBlocks: 64 }), 1);
  assertEquals(numSplitsHeuristic({ workItems: 500, workers: 108, keyBlocks: 1000 }), 1);
  // One sequence on 2 workers: 2 splits fill both.
  assertEquals(numSplitsHeuristic({ workItems: 1, workers: 2, keyBlocks: 8 }), 2);
  // Can't split one key block.
  assertEquals(numSplitsHeuristic({ workItems: 1, workers: 108, keyBlocks: 1 }), 1);
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 400 }),
      fc.integer({ min: 1, max: 200 }),
      fc.integer({ min: 1, max: 2000 }),
      (workItems, workers, keyBlocks) => {
        const s = numSplitsHeuristic({ workItems, workers, keyBlocks });
        assert(s >= 1 && s <= Math.max(1, Math.min(128, workers, keyBlocks)));
        if (workItems >= 0.8 * workers) assertEquals(s, 1);
        // Eligible: a split count that changes the blocks per split.
        if (s > 1) assert(Math.ceil(keyBlocks / s) !== Math.ceil(keyBlocks / (s - 1)));
        // The smallest eligible count whose wave efficiency is within 85 % of the best.
        const eff = (n: number) => {
          const w = (workItems * n) / workers;
          return w / Math.ceil(w);
        };
        const eligible = (n: number) =>
          n === 1 || Math.ceil(keyBlocks / n) !== Math.ceil(keyBlocks / (n - 1));
        const limit = Math.min(128, workers, keyBlocks);
        let best = 0;
        for (let n = 1; n <= limit; n++) if (eligible(n)) best = Math.max(best, eff(n));
        if (workItems < 0.8 * workers) {
          assert(eff(s) >= 0.85 * best, `split ${s}: efficiency ${eff(s)} vs best ${best}`);
          for (let n = 1; n < s; n++) {
            assert(!eligible(n) || eff(n) < 0.85 * best, `smaller split ${n} was good enough`);
          }
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("renderSchedule draws one row per worker and one segment rect per segment", () => {
  fc.assert(
    fc.property(planArb, (d) => {
      const s = leanOf(d);
      const svg = renderSchedule(s);
      assert(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
      assertEquals(svg.match(/<g data-worker=/g)?.length ?? 0, s.workers.length);
      const segs = s.workers.reduce((a, r) => a + r.length, 0);
      assertEquals(svg.match(/class="segment"/g)?.length ?? 0, segs);
      // A cut bar on each inner boundary of every cut unit.
      const bars = s.cuts.reduce((a, c) => a + 2 * (c.partials.length - 1), 0);
      assertEquals(svg.match(/class="cut"/g)?.length ?? 0, bars);
      // Balanced tags (a cheap well-formedness check without an XML parser).
      const open = (svg.match(/<(?!\/)[a-z]+[^>]*[^/]>/g) ?? []).length;
      const close = (svg.match(/<\/[a-z]+>/g) ?? []).length;
      assertEquals(open, close);
    }),
    { numRuns: 60 },
  );
  const s = splitSchedule({ batch: 2, kvHeads: 1, kvLens: [100, 0], tileSize: 16, numSplits: 3 });
  const svg = renderSchedule(s, { title: "a & b <test>" });
  assert(svg.includes("a &amp; b &lt;test&gt;"));
});

Deno.test("schedule builders and the split heuristic refuse absurd sizes before allocating", () => {
  const plan = { batch: 1, kvHeads: 1, kvLens: [10], tileSize: 1 };
  throws(
    () => leanSchedule({ ...plan, grid: 2 ** 40 }),
    (e: unknown) => e instanceof LimitError && /grid/.test((e as Error).message),
  );
  throws(
    () => splitSchedule({ ...plan, numSplits: 2 ** 40 }),
    (e: unknown) => e instanceof LimitError && /numSplits/.test((e as Error).message),
  );
  throws(
    () => splitSchedule({ ...plan, batch: 2, kvLens: [1, 1], numSplits: 2 ** 20 }),
    (e: unknown) => e instanceof LimitError && /2097152 workers/.test((e as Error).message),
  );
  throws(
    () => leanSchedule({ batch: 1, kvHeads: 2 ** 30, kvLens: [1], tileSize: 1, grid: 1 }),
    (e: unknown) => e instanceof LimitError && /units/.test((e as Error).message),
  );
  // One split a unit is FlashAttention-2: only the unit count bounds it.
  assertEquals(splitSchedule({ ...plan, numSplits: 1 }).workers.length, 1);
  const t0 = performance.now();
  assertEquals(
    numSplitsHeuristic({ workItems: 1, workers: 1e12, keyBlocks: 1e12, maxSplits: 1e12 }) >= 1,
    true,
  );
  assert(performance.now() - t0 < 2000, "the heuristic stays linear in MAX_WORKERS");
  for (
    const bad of [
      { workItems: -1, workers: 8, keyBlocks: 8 },
      { workItems: 1, workers: 0, keyBlocks: 8 },
      { workItems: 1, workers: 8, keyBlocks: NaN },
      { workItems: 1, workers: 8, keyBlocks: 8, maxSplits: 1.5 },
      { workItems: "1", workers: 8, keyBlocks: 8 },
      null,
    ]
  ) {
    throws(
      () => numSplitsHeuristic(bad as never),
      (e: unknown) => e instanceof ArgumentError && /numSplitsHeuristic/.test(String(e)),
    );
  }
});
