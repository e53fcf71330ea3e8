/**
 * The limits every planner and executor shares: how many workers a schedule may have, how
 * large a tile may be, how many query rows one unit covers.
 *
 * @module
 */

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
 * Keys of one piece of a batch-invariant schedule (`batchInvariant: true`): a unit's keys
 * are cut every `ceil(INVARIANT_CHUNK_KEYS / tileSize)` tiles, whatever else is in the batch.
 * Long enough that a piece's fixed cost (its state, its merge) is a few per cent of its
 * reads; short enough that one long sequence still spreads over many workers.
 */
export const INVARIANT_CHUNK_KEYS = 2048;
