/**
 * The runs of batch-invariant launches that stream a worker's consecutive pieces of one unit as one
 * segment: piece runs (`SgConfig.pr`, `_wgsl_piece_runs.ts`: one merged state a publication, the
 * piece-by-piece bits) and the subgroup-fold order described here (`SgConfig.sf`; bench/NOTES.md,
 * session (11)). Both publish and count alike. In the fold order each subgroup folds its pieces'
 * states left to right (every piece from a fresh state, the fold at each piece's end), and a unit's
 * subgroup states are merged once, at its end. A unit in one run is written whole. A cut unit
 * publishes, per subgroup: its first run's fold (one state), then every later piece's own state (a
 * later run cannot continue a fold it did not start: the bits would depend on where the run
 * begins). The workgroup that completes the unit's count folds them in piece order from an empty
 * state, the same fold, then merges its subgroups as a whole run would: the same bits wherever the
 * cuts fall.
 *
 * @module
 */
import type { LeanSchedule } from "../../../schedule/lean_schedule.ts";

/** One worker's run of consecutive pieces of one unit. */
export interface FoldRun {
  unit: number;
  tileStart: number;
  tileEnd: number;
  /** Tiles of each of the unit's pieces (the last may be shorter). */
  pieceTiles: number;
  /** The run starts at the unit's first piece. */
  host: boolean;
  /** First publication slot of the run, or −1 (the unit is in this run alone: written whole). */
  slot: number;
  /** Counter of the unit's publications (its index among the counters), or −1. */
  counter: number;
  /** The unit's first publication slot and its number of publications (cut units). */
  first: number;
  count: number;
}

/** The runs of every worker, and how many publication slots they use. */
export interface FoldRuns {
  workers: FoldRun[][];
  /** Publication slots (each holds one state per subgroup and row). */
  slots: number;
}

/**
 * The runs of an invariant schedule. A cut unit's counter is its index among the cut units (in
 * unit order) after one counter a unit without keys (those are the reduce pass's items, first).
 */
export function foldRuns(s: LeanSchedule): FoldRuns {
  if (s.kind !== "invariant") throw new Error("foldRuns: needs a batch-invariant schedule");
  const counterBase = s.units.reduce((a, u) => a + (u.tiles === 0 ? 1 : 0), 0);
  const pieceTiles = new Map<number, number>();
  const workers: FoldRun[][] = s.workers.map((segs) => {
    const runs: FoldRun[] = [];
    for (const sg of segs) {
      if (sg.tileStart === 0) pieceTiles.set(sg.unit, sg.tileEnd);
      const last = runs[runs.length - 1];
      if (last && last.unit === sg.unit && last.tileEnd === sg.tileStart) {
        last.tileEnd = sg.tileEnd;
        continue;
      }
      runs.push({
        unit: sg.unit,
        tileStart: sg.tileStart,
        tileEnd: sg.tileEnd,
        pieceTiles: 0,
        host: sg.tileStart === 0,
        slot: -1,
        counter: -1,
        first: 0,
        count: 0,
      });
    }
    return runs;
  });
  // Slots: a cut unit's first run publishes one (its fold), every later piece one.
  const byUnit = new Map<number, FoldRun[]>();
  for (const runs of workers) {
    for (const r of runs) {
      r.pieceTiles = pieceTiles.get(r.unit)!;
      const list = byUnit.get(r.unit);
      if (list) list.push(r);
      else byUnit.set(r.unit, [r]);
    }
  }
  let slots = 0;
  let cut = 0;
  for (const u of [...byUnit.keys()].sort((a, b) => a - b)) {
    const runs = byUnit.get(u)!;
    if (runs.length === 1) continue;
    const P = runs[0].pieceTiles;
    const hostRun = runs.find((r) => r.host)!;
    const hostPieces = Math.ceil(hostRun.tileEnd / P);
    const pieces = Math.ceil(s.units[u].tiles / P);
    const count = 1 + pieces - hostPieces;
    for (const r of runs) {
      r.slot = r.host ? slots : slots + 1 + r.tileStart / P - hostPieces;
      r.counter = counterBase + cut;
      r.first = slots;
      r.count = count;
    }
    slots += count;
    cut++;
  }
  return { workers, slots };
}

/** Publications a run adds to its unit's count: 1 for the first run, else one a piece. */
export function runPublications(r: FoldRun): number {
  return r.host ? 1 : Math.ceil((r.tileEnd - r.tileStart) / r.pieceTiles);
}
