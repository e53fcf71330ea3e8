/**
 * The work partition of every attention algorithm, as plain data computed in one place.
 *
 * A *unit* is one (batch, kv-head, query-block): the queries of one GQA group that share the
 * same keys. Its keys are cut into *tiles* of `tileSize` (the last one may be short). A
 * schedule hands each *worker* a list of *segments* — runs of tiles of one unit. A unit done
 * by one segment is written directly; a unit cut across several segments leaves one partial
 * softmax state `(m, l, o)` per segment, and the pieces are merged in tile order (the order of
 * `cuts[i].partials`), which makes the result deterministic.
 *
 * - `leanSchedule` (LeanAttention, stream-K): all tiles of all units form one list; worker
 *   `w` gets tiles `[⌊wT/G⌋, ⌊(w+1)T/G⌋)`, so loads differ by at most one tile whatever the
 *   lengths.
 * - `splitSchedule` (FlashDecoding): each unit's tiles cut into `numSplits` equal chunks, one
 *   worker each. `numSplits = 1` is plain FlashAttention-2.
 * - `invariantSchedule` (`batchInvariant: true`, VARIANTS.md): each unit's tiles cut into
 *   pieces of a fixed `chunkTiles` (positions that depend on nothing but the unit's own
 *   keys), every piece its own segment, the pieces dealt to workers like stream-K's tiles.
 *
 * @module
 */
import { ArgumentError, LimitError, show } from "../tensor/errors.ts";
import { checkScheduleSize } from "./_schedule_size.ts";
import { MAX_WORKERS } from "./limits.ts";

/** The problem a schedule partitions. */
export interface LeanPlan {
  /** Batch size B. */
  batch: number;
  /** KV heads Hkv (one unit per batch × kv-head × query block). */
  kvHeads: number;
  /** Valid keys per batch entry (length B). */
  kvLens: readonly number[];
  /** Query blocks per (batch, kv-head) (default 1). */
  qBlocks?: number;
  /** Keys per tile. */
  tileSize: number;
  /** Number of workers (lean) — ignored by `splitSchedule`. */
  grid: number;
  /**
   * A sliding window (VARIANTS.md): a row at position p sees keys at positions
   * `[p − left, p + right]` (Infinity: no limit on that side). With a window each unit
   * covers only the keys some row of it can see (`keyStart`, `keys`); without one (or with
   * both sides unlimited) every unit covers all its valid keys, as before.
   */
  window?: { readonly left: number; readonly right: number };
  /** Query rows per (batch, head) (default 1); only read with a window. */
  Sq?: number;
  /** Causal masking, which also bounds a window's right side; only read with a window. */
  causal?: boolean;
  /** Per batch entry, the length query positions align to (default `kvLens`). */
  positionLens?: readonly number[];
  /** Position of local key 0 (default 0): the first key of a K/V part. */
  keyOffset?: number;
}

/** The fields of a plan a schedule keeps (a window is resolved into the units). */
export type CorePlan = Required<
  Omit<LeanPlan, "window" | "Sq" | "causal" | "positionLens" | "keyOffset">
>;

/** One (batch, kv-head, query-block) of the work. */
export interface LeanUnit {
  /** Batch index. */
  b: number;
  /** KV head index. */
  kvHead: number;
  /** Query block index. */
  qBlock: number;
  /**
   * First key (a run's local key index) of the unit's tile 0: 0, unless no query row of the
   * unit can see the keys before it (a window). Tile `t` covers keys `[keyStart + t·tileSize,
   * min(keyStart + keys, keyStart + (t + 1)·tileSize))`.
   */
  keyStart: number;
  /** Keys the unit covers from `keyStart` (the visible range; all valid keys without a window). */
  keys: number;
  /** Tiles: `ceil(keys / tileSize)`. */
  tiles: number;
}

/** A run of tiles of one unit done by one worker. */
export interface LeanSegment {
  /** Index into `units`. */
  unit: number;
  /** First tile (inclusive, within the unit). */
  tileStart: number;
  /** Last tile (exclusive). */
  tileEnd: number;
  /** The segment starts the unit (tile 0). */
  host: boolean;
  /** The segment ends the unit (its last tile). */
  finishing: boolean;
  /** `-1`: the unit is done whole here and written directly; else the partial slot index. */
  partial: number;
}

/** A unit cut across workers: the partial slots to merge, in tile order. */
export interface LeanCut {
  /** Index into `units`. */
  unit: number;
  /** Partial slots in merge (tile) order. */
  partials: number[];
}

/** A complete partition of the work. */
export interface LeanSchedule {
  /**
   * `"lean"` (stream-K), `"split"` (FlashDecoding / FlashAttention-2) or `"invariant"`
   * (fixed pieces; an executor must run them with arithmetic that depends on nothing else).
   */
  kind: "lean" | "split" | "invariant";
  /** The plan it was made from (with defaults filled in; a window is resolved into `units`). */
  plan: CorePlan;
  /** All units, index = `((b · kvHeads) + kvHead) · qBlocks + qBlock`. */
  units: LeanUnit[];
  /** Total tiles over all units. */
  totalTiles: number;
  /** Segments of each worker, in execution order. */
  workers: LeanSegment[][];
  /** Units cut across workers, in unit order. */
  cuts: LeanCut[];
  /** Number of partial slots (segments of cut units). */
  numPartials: number;
}

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
    throw new ArgumentError(`${name}: expected a positive integer, got ${show(v)}`);
  }
  return v;
}

/**
 * The keys `[lo, hi)` (local indices, within `[0, len)`) that some query row of rows
 * `[i0, i1)` can see under `plan`'s window; lo = 0, hi = len without one.
 */
export function visibleKeyRange(
  plan: LeanPlan,
  b: number,
  i0: number,
  i1: number,
): { lo: number; hi: number } {
  const len = plan.kvLens[b];
  const w = plan.window;
  if (!w || (w.left === Infinity && w.right === Infinity)) return { lo: 0, hi: len };
  if (i1 <= i0) return { lo: 0, hi: 0 };
  const Sq = plan.Sq ?? 1;
  const off = plan.keyOffset ?? 0;
  const P = (plan.positionLens ?? plan.kvLens)[b];
  const pFirst = P - Sq + i0; // position of the unit's first row
  const pLast = P - Sq + i1 - 1; // …and of its last
  let hi = pLast + w.right + 1 - off;
  if (plan.causal) hi = Math.min(hi, pLast + 1 - off);
  const lo = Math.max(0, pFirst - w.left - off);
  hi = Math.min(len, hi);
  return hi > lo ? { lo, hi } : { lo: 0, hi: 0 };
}

function units(plan: LeanPlan): { plan: CorePlan; units: LeanUnit[] } {
  const batch = positiveInt("batch", plan.batch);
  const kvHeads = positiveInt("kvHeads", plan.kvHeads);
  const qBlocks = positiveInt("qBlocks", plan.qBlocks ?? 1);
  const tileSize = positiveInt("tileSize", plan.tileSize);
  if (!Array.isArray(plan.kvLens) || plan.kvLens.length !== batch) {
    throw new ArgumentError(
      `kvLens: expected ${batch} lengths (one per batch entry), got ${
        Array.isArray(plan.kvLens) ? plan.kvLens.length : show(plan.kvLens)
      }`,
    );
  }
  for (const n of plan.kvLens) {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new ArgumentError(`kvLens: expected non-negative integers, got [${plan.kvLens}]`);
    }
  }
  const Sq = plan.Sq ?? 1;
  const rowsPerBlock = Math.ceil(Sq / qBlocks);
  const list: LeanUnit[] = [];
  for (let b = 0; b < batch; b++) {
    // The keys some row of a query block sees: the same for every head of the batch entry.
    const ranges = Array.from({ length: qBlocks }, (_, qb) => {
      if (!plan.window) return { lo: 0, hi: plan.kvLens[b] };
      const i0 = Math.min(Sq, qb * rowsPerBlock);
      return visibleKeyRange(plan, b, i0, Math.min(Sq, i0 + rowsPerBlock));
    });
    for (let h = 0; h < kvHeads; h++) {
      for (let qb = 0; qb < qBlocks; qb++) {
        const { lo, hi } = ranges[qb];
        list.push({
          b,
          kvHead: h,
          qBlock: qb,
          keyStart: lo,
          keys: hi - lo,
          tiles: Math.ceil((hi - lo) / tileSize),
        });
      }
    }
  }
  return {
    plan: { batch, kvHeads, qBlocks, tileSize, kvLens: [...plan.kvLens], grid: plan.grid },
    units: list,
  };
}

/** Assigns partial slots: segments of units that more than one segment touches. */
export function finish(
  kind: LeanSchedule["kind"],
  plan: CorePlan,
  unitList: LeanUnit[],
  workers: LeanSegment[][],
): LeanSchedule {
  const pieces: LeanSegment[][] = unitList.map(() => []);
  for (const run of workers) for (const s of run) pieces[s.unit].push(s);
  const cuts: LeanCut[] = [];
  let numPartials = 0;
  for (let u = 0; u < unitList.length; u++) {
    const p = pieces[u];
    if (p.length < 2) continue;
    p.sort((a, b) => a.tileStart - b.tileStart);
    const partials = p.map((s) => (s.partial = numPartials++));
    cuts.push({ unit: u, partials });
  }
  const totalTiles = unitList.reduce((a, u) => a + u.tiles, 0);
  return { kind, plan, units: unitList, totalTiles, workers, cuts, numPartials };
}

/**
 * The stream-K (LeanAttention) partition: `grid` workers, contiguous runs over the flattened
 * tile list, loads differing by at most one tile. Pure and deterministic; O(grid + units).
 *
 * @example
 * ```ts
 * import { leanSchedule } from "../mod.ts";
 * const s = leanSchedule({ batch: 2, kvHeads: 1, kvLens: [300, 100], tileSize: 64, grid: 3 });
 * console.log(s.workers.map((w) => w.map((g) => `${g.unit}:${g.tileStart}-${g.tileEnd}`)));
 * // [["0:0-2"], ["0:2-4"], ["0:4-5", "1:0-2"]]
 * ```
 */
export function leanSchedule(plan: LeanPlan): LeanSchedule {
  const grid = checkScheduleSize("leanSchedule", plan, "grid", plan?.grid, 0);
  const { plan: p, units: list } = units(plan);
  const total = list.reduce((a, u) => a + u.tiles, 0);
  const workers: LeanSegment[][] = [];
  let u = 0; // current unit
  let t = 0; // tile within unit
  for (let w = 0; w < grid; w++) {
    let left = Math.floor(((w + 1) * total) / grid) - Math.floor((w * total) / grid);
    const run: LeanSegment[] = [];
    while (left > 0) {
      while (list[u].tiles === t) {
        u++;
        t = 0;
      }
      const take = Math.min(left, list[u].tiles - t);
      run.push({
        unit: u,
        tileStart: t,
        tileEnd: t + take,
        host: t === 0,
        finishing: t + take === list[u].tiles,
        partial: -1,
      });
      t += take;
      left -= take;
    }
    workers.push(run);
  }
  return finish("lean", { ...p, grid }, list, workers);
}

/**
 * The FlashDecoding partition: every unit's tiles cut into `numSplits` chunks of
 * `ceil(tiles / numSplits)` tiles, one worker per (unit, chunk); empty chunks get empty runs.
 * `numSplits = 1` is FlashAttention-2 (one worker per unit, nothing to merge).
 */
export function splitSchedule(plan: Omit<LeanPlan, "grid"> & { numSplits: number }): LeanSchedule {
  const numSplits = checkScheduleSize("splitSchedule", plan, "numSplits", plan?.numSplits, 1);
  const { plan: p, units: list } = units({ ...plan, grid: 1 });
  const workers: LeanSegment[][] = [];
  for (let u = 0; u < list.length; u++) {
    const tiles = list[u].tiles;
    const per = Math.ceil(tiles / numSplits);
    for (let s = 0; s < numSplits; s++) {
      const start = Math.min(tiles, s * per);
      const end = Math.min(tiles, start + per);
      workers.push(
        end > start
          ? [{
            unit: u,
            tileStart: start,
            tileEnd: end,
            host: start === 0,
            finishing: end === tiles,
            partial: -1,
          }]
          : [],
      );
    }
  }
  return finish("split", { ...p, grid: workers.length }, list, workers);
}

/** Most pieces an invariant schedule may hold (each is a segment, and maybe a partial state). */
const MAX_PIECES = 1 << 22;

/**
 * The batch-invariant partition (VARIANTS.md, "Batch invariance"): unit u's tiles cut into
 * pieces `[k·c, (k + 1)·c)` with c = `chunkTiles`, or `chunkTiles(keys)` of the unit's own
 * keys — where a unit's keys are cut depends on its own keys only, never on the batch, the
 * other units or `grid` — and every piece its own segment
 * (a piece is never fused with the next on one worker, which would change its arithmetic).
 * Pieces are dealt to `grid` workers in unit order, worker w taking pieces `[⌊wP/G⌋,
 * ⌊(w+1)P/G⌋)` (no `grid`: one worker a piece); a unit with several pieces merges them in key order. With a fixed tile size
 * and per-piece arithmetic, a row's bits do not depend on anything but its own inputs.
 */
export function invariantSchedule(
  plan: Omit<LeanPlan, "grid"> & {
    chunkTiles: number | ((unitKeys: number) => number);
    grid?: number;
  },
): LeanSchedule {
  const op = "invariantSchedule";
  const given0 = checkScheduleSize(op, plan, "grid", plan?.grid ?? 1, 0);
  const given = plan.chunkTiles;
  if (typeof given !== "function") positiveInt("chunkTiles", given);
  const { plan: p, units: list } = units({ ...plan, grid: given0 });
  // A unit's chunk: fixed, or a function of the unit's own keys only.
  const chunks = list.map((u) =>
    typeof given === "function" ? positiveInt("chunkTiles(keys)", given(u.keys)) : given
  );
  const count = list.reduce((a, u, i) => a + Math.ceil(u.tiles / chunks[i]), 0);
  if (count > MAX_PIECES) {
    throw new LimitError(
      `invariantSchedule: ${count} pieces, more than the ${MAX_PIECES} a ` +
        `schedule may hold (use larger tiles or chunks)`,
    );
  }
  const pieces: LeanSegment[] = [];
  for (let u = 0; u < list.length; u++) {
    const tiles = list[u].tiles;
    for (let t = 0; t < tiles; t += chunks[u]) {
      const end = Math.min(tiles, t + chunks[u]);
      pieces.push({
        unit: u,
        tileStart: t,
        tileEnd: end,
        host: t === 0,
        finishing: end === tiles,
        partial: -1,
      });
    }
  }
  const P = pieces.length;
  // No grid: one worker a piece (flash's way).
  const grid = plan.grid ?? Math.max(1, P);
  if (grid > MAX_WORKERS) {
    throw new LimitError(`${op}: ${P} pieces, one worker each, more than ${MAX_WORKERS} workers`);
  }
  const workers: LeanSegment[][] = [];
  for (let w = 0; w < grid; w++) {
    workers.push(pieces.slice(Math.floor((w * P) / grid), Math.floor(((w + 1) * P) / grid)));
  }
  return finish("invariant", { ...p, grid }, list, workers);
}
