/**
 * The limits every planner and executor shares: how many workers a schedule may have, how
 * large a tile may be, how many query rows one unit covers.
 *
 * @module
 */
import { ArgumentError, show } from "../tensor/errors.ts";

/**
 * Most workers a schedule may have (`grid`, or units × `numSplits`): a schedule holds a run
 * per worker, so an absurd count would exhaust memory instead of failing cleanly.
 */
export const MAX_WORKERS = 1 << 20;

/**
 * Largest `tileSize`/`blockN`: kernels index keys with 32-bit integers (`tileEnd · tileSize`
 * must not wrap), and any tile past N keys is one tile anyway.
 */
export const MAX_TILE = 1 << 30;

/**
 * Query rows per query block. One unit covers a GQA group's heads × this many query rows,
 * like FlashAttention-2's `kBlockM`; decode (Sq = 1) gives one block per (batch, kv-head).
 */
export const BLOCK_M = 64;

/** Query blocks of `Sq` query rows. */
export function queryBlocksOf(Sq: number): number {
  return Math.ceil(Sq / BLOCK_M);
}

/**
 * Keys of the shortest piece of a batch-invariant schedule (`batchInvariant: true`) unless a
 * backend chooses another ({@link PieceRule}); a unit is cut into pieces of
 * {@link invariantChunkKeys} keys (in whole tiles), whatever else is in the batch.
 */
export const INVARIANT_CHUNK_KEYS = 1024;
/** Keys of the longest piece of a batch-invariant schedule. */
export const INVARIANT_MAX_CHUNK_KEYS = 16384;

/**
 * Pieces a batch-invariant unit is cut into at most (unless a backend chooses another), until
 * pieces reach the longest.
 */
export const INVARIANT_PIECES = 16;

/**
 * How a backend cuts a batch-invariant unit: pieces of `shortest` keys (a power of two up to
 * {@link INVARIANT_MAX_CHUNK_KEYS}), doubled while a unit would have more than `most` pieces
 * (an integer in 1..1024). A function of the backend's kernels and the problem's fixed shape,
 * never of the batch (`Backend.invariantPieces`).
 */
export interface PieceRule {
  /** Keys of the shortest piece: a power of two up to {@link INVARIANT_MAX_CHUNK_KEYS}. */
  shortest: number;
  /** The most pieces a unit is cut into before its pieces double: 1 to 1024. */
  most: number;
  /**
   * Units of fewer than `under` keys are cut into pieces of `piece` keys instead (a power of two
   * up to `shortest`; `under` an integer from 1 to 2³⁰). Absent: no exception.
   */
  shortUnits?: { readonly under: number; readonly piece: number };
}

/** The rule unless a backend says: 1024 keys, at most 16 pieces. */
export const DEFAULT_PIECE_RULE: Readonly<PieceRule> = Object.freeze({
  shortest: INVARIANT_CHUNK_KEYS,
  most: INVARIANT_PIECES,
});

/**
 * Keys a piece of a unit with `keys` keys holds under `batchInvariant`: the rule's shortest
 * piece, doubled while the unit would be cut into more than `rule.most` pieces (up to the
 * longest). It reads nothing but the unit's own length, so it is the same in every batch. By
 * default sixteen pieces spread one sequence of 8 kv heads over 128 workers (a GQA decode at
 * B = 1); pieces of at least 1024 keys keep a piece's fixed cost (its state, its fence, its
 * merge) small where a worker streams many of them (large batches). Chosen on an H100 among
 * shortest pieces of 256, 512, 1024 and 2048 keys and 16 or 32 pieces (bench/NOTES.md,
 * "Session 2026-12-06 (4)"). A unit shorter than the rule's `shortUnits.under` keys takes pieces of
 * `shortUnits.piece` keys.
 */
export function invariantChunkKeys(keys: number, rule: PieceRule = DEFAULT_PIECE_RULE): number {
  const { shortest, most, shortUnits } = checkPieceRule("invariantChunkKeys", rule);
  if (shortUnits && keys < shortUnits.under) return shortUnits.piece;
  let c = shortest;
  while (c < INVARIANT_MAX_CHUNK_KEYS && most * c < keys) c *= 2;
  return c;
}

/** Whether `x` is a power of two from 1 to `max`. */
const pow2UpTo = (x: number, max: number) =>
  Number.isSafeInteger(x) && x >= 1 && x <= max && (x & (x - 1)) === 0;

/** `rule` if its shortest piece and piece count are in range; else an `ArgumentError`. */
export function checkPieceRule(where: string, rule: unknown): PieceRule {
  const r = rule as Partial<PieceRule> | null;
  const c = r?.shortest as number, m = r?.most as number;
  if (!pow2UpTo(c, INVARIANT_MAX_CHUNK_KEYS)) {
    throw new ArgumentError(
      `${where}: the shortest piece must be a power of two up to ${INVARIANT_MAX_CHUNK_KEYS} ` +
        `keys, got ${show(r?.shortest)}`,
    );
  }
  if (!Number.isSafeInteger(m) || m < 1 || m > 1024) {
    throw new ArgumentError(
      `${where}: the most pieces a unit must be an integer in 1..1024, got ${show(r?.most)}`,
    );
  }
  const su = r?.shortUnits as Partial<NonNullable<PieceRule["shortUnits"]>> | undefined;
  if (su === undefined) return { shortest: c, most: m };
  const u = su?.under as number, p = su?.piece as number;
  if (!Number.isSafeInteger(u) || u < 1 || u > 2 ** 30) {
    throw new ArgumentError(
      `${where}: shortUnits.under must be an integer in 1..2^30, got ${show(su?.under)}`,
    );
  }
  if (!pow2UpTo(p, c)) {
    throw new ArgumentError(
      `${where}: shortUnits.piece must be a power of two up to the shortest piece (${c}), ` +
        `got ${show(su?.piece)}`,
    );
  }
  return { shortest: c, most: m, shortUnits: { under: u, piece: p } };
}

/**
 * Keys of the shortest piece `rule` can cut: its short units' piece where it has one (never over
 * `shortest`, {@link checkPieceRule}), else `shortest`.
 */
export function smallestPiece(rule: PieceRule): number {
  return rule.shortUnits?.piece ?? rule.shortest;
}

/** The rule as text, for plan keys: `shortest/most`, and `<under:piece` with short units. */
export function pieceRuleKey(rule: PieceRule): string {
  const su = rule.shortUnits;
  return `${rule.shortest}/${rule.most}${su ? `<${su.under}:${su.piece}` : ""}`;
}
