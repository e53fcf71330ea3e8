/**
 * The runs of the WebGPU subgroup-fold order (`backends/webgpu/attention/_fold_runs.ts`): for
 * random batch-invariant schedules, every unit's tiles are covered once, in order, by runs of
 * whole pieces; a unit in one run publishes nothing; a cut unit's publications (its first run's
 * fold, then one a later piece) fill its slots exactly once, the runs' counts add up to them,
 * and each cut unit has its own counter after the units without keys.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { invariantSchedule } from "../schedule/lean_schedule.ts";
import { foldRuns, runPublications } from "../backends/webgpu/attention/_fold_runs.ts";

Deno.test("fold runs cover each unit once and fill each cut unit's publication slots once", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 1, max: 4 }),
      fc.option(fc.integer({ min: 1, max: 60 }), { nil: undefined }),
      (lens, kvHeads, chunk, grid) => {
        const s = invariantSchedule({
          batch: lens.length,
          kvHeads,
          kvLens: lens,
          tileSize: 1,
          chunkTiles: chunk,
          ...(grid === undefined ? {} : { grid }),
        });
        const { workers, slots } = foldRuns(s);
        const empties = s.units.filter((u) => u.tiles === 0).length;
        const runs = workers.flat();
        const used = new Array(slots).fill(0);
        const counters = new Set<number>();
        s.units.forEach((unit, u) => {
          const mine = runs.filter((r) => r.unit === u).sort((a, b) => a.tileStart - b.tileStart);
          if (unit.tiles === 0) return assertEquals(mine.length, 0);
          // Covered once, in order, in whole pieces.
          let t = 0;
          for (const r of mine) {
            assertEquals([r.tileStart, r.pieceTiles], [t, Math.min(chunk, unit.tiles)]);
            assert(
              r.tileEnd > r.tileStart && (r.tileEnd % chunk === 0 || r.tileEnd === unit.tiles),
            );
            assertEquals(r.host, t === 0);
            t = r.tileEnd;
          }
          assertEquals(t, unit.tiles);
          if (mine.length === 1) return assertEquals(mine[0].slot, -1);
          const { first, count, counter } = mine[0];
          const hostPieces = Math.ceil(mine[0].tileEnd / chunk);
          assertEquals(count, 1 + Math.ceil(unit.tiles / chunk) - hostPieces);
          assertEquals(mine.reduce((a, r) => a + runPublications(r), 0), count);
          assertEquals(mine[0].slot, first);
          for (const r of mine) {
            assertEquals([r.first, r.count, r.counter], [first, count, counter]);
            for (let k = 0; k < runPublications(r); k++) used[r.slot + k]++;
          }
          assert(counter >= empties && !counters.has(counter));
          counters.add(counter);
        });
        assert(used.every((n) => n === 1), `every slot published once: ${used}`);
      },
    ),
  );
});
