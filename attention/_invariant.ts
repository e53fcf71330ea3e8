/**
 * `batchInvariant: true` on flash and lean (VARIANTS.md, "Batch invariance"): the schedule cuts a
 * unit's keys only every `invariantChunkKeys(keys, rule)` keys of its own length (the backend's
 * rule for the shape; by default 1024 keys doubled while more than 16 pieces, up to 16384; in whole
 * tiles), each piece its own state, merged left to right (`invariantSchedule`); backends run the
 * pieces with a kernel configuration chosen without looking at the batch (schedule kind
 * `"invariant"`). K/V stored in parts are cut where the parts end, which depends on the whole
 * tensor: refused.
 *
 * @module
 */
import { ArgumentError, LimitError, show } from "../tensor/errors.ts";
import { invariantSchedule, type LeanSchedule } from "../schedule/lean_schedule.ts";
import {
  checkPieceRule,
  DEFAULT_PIECE_RULE,
  invariantChunkKeys,
  type PieceRule,
} from "../schedule/limits.ts";
import type { Backend } from "../backends/backend.ts";
import type { AttentionPlan } from "../schedule/attention_plan.ts";
import type { ScheduleLens } from "./plan.ts";

/** The option's value: a boolean, false when absent. */
export function batchInvariantOption(op: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") {
    throw new ArgumentError(`${op}: batchInvariant must be a boolean, got ${show(value)}`);
  }
  return value;
}

/**
 * How `backend` cuts units of `unitRows` query rows: its `invariantPieces`, else
 * {@link DEFAULT_PIECE_RULE}. Neither reads the batch, so the pieces stay the same whatever
 * else is in it.
 */
export function pieceRuleOf(backend: Backend, unitRows: number): PieceRule {
  const r = backend.invariantPieces?.(unitRows) ?? DEFAULT_PIECE_RULE;
  return checkPieceRule("batchInvariant: the backend's invariantPieces", r);
}

/** Tiles of a piece of a unit with `keys` keys, for tiles of `tileSize` keys. */
export function chunkTiles(tileSize: number, keys: number, rule?: PieceRule): number {
  return Math.max(1, Math.ceil(invariantChunkKeys(keys, rule) / tileSize));
}

/** The problem's units, as a schedule builder needs them. */
export interface InvariantProblem {
  batch: number;
  kvHeads: number;
  qBlocks: number;
  tileSize: number;
  /** How units are cut (`pieceRuleOf`; default {@link DEFAULT_PIECE_RULE}). */
  pieces?: PieceRule;
}

/** The invariant schedule over `grid` workers, or (no grid: flash) one worker a piece. */
export function invariantScheduleOf(
  problem: InvariantProblem,
  lens: ScheduleLens,
  grid?: number,
): LeanSchedule {
  const T = problem.tileSize;
  return invariantSchedule({
    ...lens,
    ...problem,
    chunkTiles: (keys: number) => chunkTiles(T, keys, problem.pieces),
    ...(grid === undefined ? {} : { grid }),
  });
}

/** Throws where a batch-invariant plan runs over K/V stored in parts. */
export function checkInvariantPlan(op: string, plan: AttentionPlan): void {
  if (plan.parts) {
    throw new LimitError(
      `${op}: batchInvariant needs K/V within one storage binding, but they are stored in ` +
        `${plan.parts.length} parts (their cuts depend on the whole tensor); use a kvCache ` +
        `(pages never cut a sequence) or smaller K/V`,
    );
  }
}
