/**
 * Cutting a schedule's runs to a per-worker loop budget. Some executors stop a worker's loops
 * after a fixed number of iterations in total — Mesa's llvmpipe (lavapipe, the software
 * Vulkan adapter) ends every loop of a shader invocation once 65,535 iterations have run,
 * silently — so a worker's run must stay below such a budget. A run over it is cut into
 * several workers (a segment over it into several segments at tile boundaries); the units cut
 * anew get partial states, merged in tile order like any cut unit, so the result changes only
 * by rounding.
 *
 * @module
 */
import { LimitError } from "../tensor/errors.ts";
import { finish, type LeanSchedule, type LeanSegment } from "./lean_schedule.ts";

/** What a worker's run costs in loop iterations, and how many it may cost. */
export interface LoopCost {
  /** Iterations a segment costs besides its keys (setup, tile loop entry, writing out). */
  readonly perSegment: number;
  /** Iterations a key costs. */
  readonly perKey: number;
  /** Most iterations a worker may run. */
  readonly budget: number;
}

/** Estimated iterations of a run under `cost` (keys of each segment, rounded up to tiles). */
export function runCost(s: LeanSchedule, run: readonly LeanSegment[], cost: LoopCost): number {
  let n = 0;
  for (const g of run) n += cost.perSegment + cost.perKey * segmentKeys(s, g);
  return n;
}

/** Keys a segment walks: its tiles, the last one cut at the unit's end. */
function segmentKeys(s: LeanSchedule, g: LeanSegment): number {
  const ts = s.plan.tileSize;
  return Math.min(s.units[g.unit].keys, g.tileEnd * ts) - g.tileStart * ts;
}

/**
 * `s` with every worker's run within `cost.budget`: returned unchanged when all fit, else
 * rebuilt with the runs over it cut into consecutive workers (in order, so worker `w`'s
 * pieces stay adjacent). Pure and deterministic; O(workers + segments + new pieces).
 * Throws {@link LimitError} where one tile alone is over the budget (use smaller tiles).
 */
export function withinLoopBudget(s: LeanSchedule, cost: LoopCost): LeanSchedule {
  if (s.workers.every((run) => runCost(s, run, cost) <= cost.budget)) return s;
  const ts = s.plan.tileSize;
  const tileCost = cost.perKey * ts;
  if (cost.perSegment + tileCost > cost.budget) {
    throw new LimitError(
      `a tile of ${ts} keys takes about ${
        Math.ceil(cost.perSegment + tileCost)
      } loop iterations, more than the ${cost.budget} this adapter runs per invocation; use a ` +
        `smaller tileSize/blockN`,
    );
  }
  const workers: LeanSegment[][] = [];
  for (const run of s.workers) {
    let cur: LeanSegment[] = [];
    let used = 0;
    for (const g of run) {
      const unit = s.units[g.unit];
      let t = g.tileStart;
      while (t < g.tileEnd) {
        const room = cost.budget - used - cost.perSegment;
        // Whole tiles that fit; the segment's last tile may be short.
        let end = t + Math.max(0, Math.floor(room / tileCost));
        if (end >= g.tileEnd || room >= cost.perKey * segmentKeys(s, { ...g, tileStart: t })) {
          end = g.tileEnd;
        } else if (s.kind === "invariant" && used > 0) {
          // A piece of an invariant schedule is cut only where it alone is over the budget
          // (at offsets from its own start): start a new worker rather than cut it here.
          end = t;
        }
        if (end === t) {
          workers.push(cur);
          [cur, used] = [[], 0];
          continue;
        }
        const piece: LeanSegment = {
          unit: g.unit,
          tileStart: t,
          tileEnd: end,
          host: t === 0,
          finishing: end === unit.tiles,
          partial: -1,
        };
        cur.push(piece);
        used += cost.perSegment + cost.perKey * segmentKeys(s, piece);
        t = end;
      }
    }
    workers.push(cur);
  }
  return finish(s.kind, { ...s.plan, grid: workers.length }, s.units, workers);
}
