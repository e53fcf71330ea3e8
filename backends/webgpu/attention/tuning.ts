/**
 * The attention kernels' knobs (benchmarks compare variants; defaults are picked per device)
 * and the measured defaults behind the subgroup kernel's choice (`subgroup_config.ts`).
 *
 * @module
 */
import { ArgumentError, show } from "../../../tensor/errors.ts";
import {
  DEFAULT_PIECE_RULE,
  INVARIANT_MAX_CHUNK_KEYS,
  type PieceRule,
} from "../../../schedule/limits.ts";

/** Knobs of the attention kernels (for benchmarks; defaults are picked per device). */
export interface AttentionTuning {
  /**
   * Force a kernel: `"sg"` (subgroups), `"wgm"` (workgroup memory) or `"generic"`; default: the
   * first of these that applies. A forced kernel that does not apply falls back in that order.
   */
  kernel?: "sg" | "wgm" | "generic";
  /**
   * Threads per workgroup of the subgroup kernel (default 256; {@link QUANT_GQA_WG} for quantized
   * GQA-4 decode and {@link QUANT_E4M3_MHA_WG} for float8e4m3 one-row decode with long runs): a
   * multiple of 32 (not only a power of two, e.g. 384: more warps a multiprocessor where
   * registers allow); one that the device's subgroups do not divide falls back to the next
   * kernel.
   */
  wg?: number;
  /** Lanes per key of the subgroup kernel (4–32, at most the subgroup size; default by rows). */
  L?: number;
  /**
   * Keys per slot per iteration of the subgroup kernel (default: as many as keep a batch's K/V
   * within 64 registers a lane, at most 8; at most 4 for units of four rows with at most 1,024
   * keys a worker).
   */
  U?: number;
  /**
   * Prefetch the next batch of keys before the current batch's math (default: on for units of
   * four rows with more than 1,024 keys a worker, else off).
   */
  pf?: boolean;
  /** Butterfly reduction of the dot products (default on where U·rows is a power of two). */
  bf?: boolean;
  /** Rotated key loop: first loads before q (default: on for multi-row units). */
  rot?: boolean;
  /**
   * Row groups of the subgroup kernel (1, 2, 4 or 8; default 1): a unit's rows are split
   * across the subgroups of a workgroup, which stream the same keys (K/V from DRAM once, then
   * L1/L2), so each lane holds fewer rows of q and output — fewer registers and shuffles per
   * key for GQA decode. Reduced to what divides the rows and the subgroups per workgroup.
   */
  rs?: number;
  /**
   * Workgroup-staged key tiles in the subgroup kernel (default off): the next tile of K/V is
   * loaded (coalesced, into registers) while the current one is processed from workgroup
   * memory, so loads stay in flight during the math. Falls back to off where the tile does
   * not fit in workgroup memory.
   */
  ws?: boolean;
  /**
   * Per-row mask of the P·V terms past a row's causal end, in the batches of a segment that
   * hold such keys (`0 · ∞ = NaN` would otherwise leak a hidden ±∞ value). Default: on where
   * the rows of a unit end at different keys (causal with more than one query row) and with
   * staged tiles; off for decode, where no row ends before the segment (keys past the segment
   * load as zero instead). Forcing it off for causal prefill gives NaN for a hidden ±∞ value.
   */
  tailMask?: boolean;
  /**
   * Vote before the running max in the subgroup kernel (default: on for units of two or more
   * rows and over K/V with head scales): the shuffle reduction of a batch's max runs only when
   * some lane's score exceeds the row's running max. Same results bit for bit, except over K/V
   * with head scales, where it also selects held mode (equal within rounding).
   */
  lazyMax?: boolean;
  /**
   * Merge cut units inside the subgroup kernel (default on): the last workgroup to finish a
   * piece of a unit merges the unit's pieces in the listed order, so a call is one dispatch
   * instead of two. Same results bit for bit as the reduce pass.
   */
  fusedMerge?: boolean;
  /**
   * With the in-kernel merge: a worker publishes and counts its partial states once, after
   * its last segment, not after each (default: on for batch-invariant schedules, whose
   * workers stream many short pieces; off otherwise). Same results bit for bit.
   */
  deferMerge?: boolean;
  /**
   * Workgroup barriers of the subgroup kernel's end-of-segment merge (1, 2 or 3; default 2
   * for units of two or more rows, 3 for one row; see `SgConfig.mb`). Same results bit for
   * bit.
   */
  mergeBarriers?: 1 | 2 | 3;
  /**
   * Batch-invariant launches of units of two or more rows in the subgroup-fold order, where it
   * applies (`plan.ts`, `_fold_runs.ts`): a worker's consecutive pieces of a unit folded per
   * subgroup without ending a segment at each (other bits; batch-invariant as well). Default
   * off: the piece-by-piece bits (one segment a piece, or `pieceRuns`). Tested on lavapipe
   * and an H100; on the H100 it beat one segment a piece only where no unit is cut across
   * workers ((16,32,8)) and lost 15–50 points where units are cut (B ≤ 4; bench/NOTES.md,
   * session (12)). Takes precedence over `pieceRuns`.
   */
  foldOrder?: boolean;
  /**
   * Batch-invariant launches with a worker's consecutive pieces of a unit streamed as one
   * segment, where the kernel allows (`plan.ts`, `_wgsl_piece_runs.ts`): each piece's state
   * merged at its end and folded or published without a segment's fence, count and drained
   * loads. Same results bit for bit as one segment a piece (off). Units of two or more rows
   * only (one-row units were slower in runs, and some gave NaN on an H200 and an H100, also
   * with a branch-free fold). Default on: its tests passed at length on an H100 with it on
   * (`bench/probes/piece_runs_bench.sh`), and it costs 8–25 points less than one segment a
   * piece where a worker holds several pieces (bench/NOTES.md, sessions (13) and (14)).
   */
  pieceRuns?: boolean;
  /**
   * Piece runs merging their pieces' subgroup states two pieces at a time, where the kernel
   * has one merge round and room for two copies of its merge arrays (`SgConfig.pp`): one
   * workgroup barrier wait every second piece instead of every piece. Same bits. Default on:
   * its tests passed on an H100 with it on, and it costs 1–2 points less where runs are short
   * and cut, nothing where a worker streams a whole unit (bench/NOTES.md, session (15)).
   */
  pairedPieces?: boolean;
  /**
   * Keys of the shortest piece of a batch-invariant schedule (a power of two, 64 to 16384;
   * default {@link invariantPieceFor}'s). Other pieces, so other bits (batch-invariant as
   * well).
   */
  invariantPiece?: number;
  /**
   * The most pieces a batch-invariant unit is cut into before its pieces double (1 to 1024;
   * default {@link invariantPieceFor}'s). Other pieces, so other bits (batch-invariant as well).
   */
  invariantPieces?: number;
}

/**
 * Keys of the shortest batch-invariant piece of a unit of two or more rows on WebGPU (GQA
 * decode): with piece runs such a piece ends without a segment end, so shorter pieces are cheap
 * there, and at B = 1 they give more workers of the grid a piece (bench/NOTES.md, session (15)).
 * Where runs do not apply (`pieceRuns` in plan.ts: e.g. sliding windows, head-scaled quantized
 * K/V, the generic kernels) each piece still ends a segment; those launches were not timed
 * with 512-key pieces.
 */
export const MULTI_ROW_SHORTEST_PIECE = 512;

/**
 * Multi-row units (GQA decode) of fewer than `under` keys take pieces of `piece` keys. At 1k keys
 * on an H100 (bench/NOTES.md, session (17)) the cost over lean, B = 1 / 4 / 16 at (·,32,8), was
 * +32 / +26 / +5 % with 512-key pieces and +9 / +8 / +16 % with 256-key ones (128: −1 / +25 / +36
 * %); at 4k, 512-key pieces stay the best (+12 / +11 % at B = 1 / 16; 256-key +6 / +23 %). At 2k
 * (session (18), before the unrolled merge) the worst of B = 1 / 4 / 16 was +24 % with 512-key
 * pieces, +22 % with 256; 512-key units cost +27 % at worst with 256-key pieces, +20 % as one piece
 * and +52 % with 128 (no choice within 10 %). Session (27): with 512- / 256-key pieces the worst
 * of B = 1 / 2 / 4 / 8 / 16 is +27 / +12 % at 2048 keys (B = 2 has 128 pieces of 256 for 128
 * workers), +30 / +43 % at 2560 and +19 / +37 % at 3072 (B = 2: 160 or 192 pieces of 256, so some
 * workers hold two, often of two units). So units of at most 2048 keys take 256. Launches without
 * piece runs were not timed.
 */
export const MULTI_ROW_SHORT_UNITS = Object.freeze({ under: 2049, piece: 256 });

/**
 * How a batch-invariant schedule on WebGPU cuts units of `unitRows` rows: the tuning's
 * `invariantPiece` and `invariantPieces` (exactly those, no short-unit exception), else
 * {@link DEFAULT_PIECE_RULE}'s with the shortest piece {@link MULTI_ROW_SHORTEST_PIECE} and
 * {@link MULTI_ROW_SHORT_UNITS} for units of two or more rows.
 */
export function invariantPieceFor(t: AttentionTuning, unitRows: number): PieceRule {
  const multi = unitRows >= 2;
  const shortest = multi ? MULTI_ROW_SHORTEST_PIECE : DEFAULT_PIECE_RULE.shortest;
  const tuned = t.invariantPiece !== undefined || t.invariantPieces !== undefined;
  return {
    shortest: t.invariantPiece ?? shortest,
    most: t.invariantPieces ?? DEFAULT_PIECE_RULE.most,
    ...(multi && !tuned ? { shortUnits: MULTI_ROW_SHORT_UNITS } : {}),
  };
}

/**
 * Defaults for units of four or more rows (GQA decode), under the explicit tuning. Empty: the
 * staged-tile and row-group variants lost 10–35 points on an H200 (bench/NOTES.md, run 4).
 */
export const MULTI_ROW_DEFAULTS: AttentionTuning = {};

/**
 * A wider workgroup for quantized decode: `wg` threads where a worker has more than `keysOver`
 * keys and, where `workersPerCu` is given, the grid has at most that many workers a compute unit.
 */
export interface WideQuantWorkgroup {
  readonly wg: number;
  readonly keysOver: number;
  readonly workersPerCu?: number;
}

/**
 * Threads a workgroup (`wg`) of the subgroup kernel for quantized K/V (int8, float8e4m3) in
 * decode units of four rows (GQA group 4) with more than `keysOver` keys a worker, where the
 * device allows it (else 256); batch-invariant launches, planned as a worker of 2,048 keys
 * (`plan.ts`), keep 256 (not timed wider; paired pieces need ≤ 8 subgroups). The quantized GQA
 * loop is issue-bound with one workgroup a multiprocessor, and 12 warps hide more of it than 8
 * where a worker's run is long: on an H100 (bench/NOTES.md, session (22)) 16k keys a worker ran
 * 4.8–4.9 % (int8) and 7.9 % (float8e4m3) faster in 384 threads; 4k keys −0.6…+1.8 % (int8) and
 * −2.9…+1.2 % (e4m3); 1k keys and less 0–15 % (int8) and 5–22 % (e4m3) slower. Float16 K/V ran
 * 9–11 % slower in 384 threads at 4k–16k keys a worker (twice the registers a key batch: spills).
 */
export const QUANT_GQA_WG: WideQuantWorkgroup = Object.freeze({ wg: 384, keysOver: 4096 });

/**
 * Threads a workgroup of the subgroup kernel for float8e4m3 K/V in one-row (multi-head) decode
 * units with more than `keysOver` keys a worker, where the device allows it (else 256). E4M3's
 * decode is the costlier one and its multi-head loop ran at 83–89 % of the read ceiling in 256
 * threads. On an H100 (bench/NOTES.md, session (24)), 384 threads against 256 on the same grid:
 * −3.6 … −7.3 % from 4,096 to 31,775 keys a worker ((1,32,32) 64k and 256k, (1,64,64) 16k on 256
 * workers and 64k, (4,32,32) 16k); +1.3 % at 2,048 ((1,32,32) 16k) and +1.6 % at 3,971
 * ((1,64,64) 16k on 264 workers; the grid model gives it 256). int8 multi-head loses 26–39 % in
 * 384 threads (it streams at 90–96 %): 256 stays. Batch-invariant launches (planned as a worker
 * of 2,048 keys) keep 256. Only on grids of at most two workers a compute unit: on 512 workers
 * ((16,32,32) 4k and 16k, H100, session (25)) 384 threads took 15 % and 8 % longer than 256 (more
 * workers than fit at once; one-row units in 256 threads fit more workgroups a multiprocessor).
 */
export const QUANT_E4M3_MHA_WG: WideQuantWorkgroup = Object.freeze({
  wg: 384,
  keysOver: 2048,
  workersPerCu: 2,
});

/**
 * Keys per worker for which 4-row subgroups take a whole 32-lane subgroup per key (L = 32)
 * instead of 16 lanes, when the schedule has between one and two workers per compute unit
 * (the backend's lean grid is two): +1…+5 points of the streaming-read ceiling there on an
 * H200 in four runs; −4 above the range (≥ 1 GB of K/V), −1 below, and 5–20 points worse
 * with at most one worker per compute unit (lean grid 1×, flash with B·Hkv ≤ SMs) or three
 * (bench/NOTES.md, runs 4–7).
 */
export const WIDE_KEY_WORK: readonly [number, number] = [256, 4096];

/**
 * Keys per worker up to which units of four rows (GQA decode, group 4) take 4 keys a slot per
 * iteration instead of 8: on an H200, (1,32,8) and (4,32,8) at 64–1,024 keys a worker ran 3–9 %
 * faster with 4 (1,024 keys of (16,32,8) 1k: equal), at 2,048 keys 1–3 % slower, at 4,096 5–11 %
 * slower; 8-row units lost 5 % with 4 at 1,024 keys (bench/NOTES.md, session 3).
 */
export const SHORT_GQA_KEYS = 1024;

/**
 * The range of each numeric knob: an integer in `[min, max]`, a power of two where `pow2`, a
 * multiple of `step` where given.
 */
const NUMERIC: Record<
  "wg" | "L" | "U" | "rs" | "mergeBarriers" | "invariantPiece" | "invariantPieces",
  { min: number; max: number; pow2: boolean; step?: number }
> = {
  invariantPiece: { min: 64, max: INVARIANT_MAX_CHUNK_KEYS, pow2: true },
  invariantPieces: { min: 1, max: 1024, pow2: false },
  wg: { min: 32, max: 1024, pow2: false, step: 32 },
  L: { min: 4, max: 32, pow2: true },
  U: { min: 1, max: 16, pow2: false },
  rs: { min: 1, max: 8, pow2: true },
  mergeBarriers: { min: 1, max: 3, pow2: false },
};

const FLAGS = [
  "pf",
  "bf",
  "rot",
  "ws",
  "tailMask",
  "lazyMax",
  "fusedMerge",
  "deferMerge",
  "foldOrder",
  "pieceRuns",
  "pairedPieces",
] as const;

/**
 * A validated copy of a tuning (frozen, so a later change to the object given cannot bypass
 * the checks): every knob known and in range. Throws {@link ArgumentError} naming the knob,
 * its range and the value given — a knob out of range is refused rather than replaced by its
 * default, since a benchmark setting it means to measure that value (`U: 0` used to make
 * every later call spin forever). `maxWg`: the device's `maxComputeInvocationsPerWorkgroup`.
 */
export function checkTuning(t: unknown, maxWg = 1024): Readonly<AttentionTuning> {
  const where = "WebGpuBackend.attentionTuning";
  if (typeof t !== "object" || t === null || Array.isArray(t)) {
    throw new ArgumentError(`${where}: expected an object of kernel knobs, got ${show(t)}`);
  }
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(t)) {
    const v = (t as Record<string, unknown>)[key];
    if (v === undefined) continue;
    if (key === "kernel") {
      if (v !== "sg" && v !== "wgm" && v !== "generic") {
        throw new ArgumentError(
          `${where}.kernel: expected "sg", "wgm" or "generic", got ${show(v)}`,
        );
      }
    } else if (key in NUMERIC) {
      const r = NUMERIC[key as keyof typeof NUMERIC];
      const max = key === "wg" ? Math.min(r.max, maxWg) : r.max;
      const ok = typeof v === "number" && Number.isInteger(v) && v >= r.min && v <= max &&
        (!r.pow2 || (v & (v - 1)) === 0) && (!r.step || v % r.step === 0);
      if (!ok) {
        const what = r.pow2 ? "a power of two" : r.step ? `a multiple of ${r.step}` : "an integer";
        throw new ArgumentError(
          `${where}.${key}: expected ${what} from ${r.min} to ${max}, got ${show(v)}`,
        );
      }
    } else if ((FLAGS as readonly string[]).includes(key)) {
      if (typeof v !== "boolean") {
        throw new ArgumentError(`${where}.${key}: expected a boolean, got ${show(v)}`);
      }
    } else {
      throw new ArgumentError(
        `${where}: unknown knob ${JSON.stringify(key)} (known: kernel, ${
          Object.keys(NUMERIC).join(", ")
        }, ${FLAGS.join(", ")})`,
      );
    }
    out[key] = v;
  }
  return Object.freeze(out) as Readonly<AttentionTuning>;
}
