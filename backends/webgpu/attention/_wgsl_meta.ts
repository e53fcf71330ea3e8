/**
 * The `meta` array every attention kernel reads (one u32 upload, one source of truth): its
 * layout, and the WGSL that reads it — the problem sizes from the header and the worker's
 * segments from the schedule. `meta.ts` writes what this layout describes.
 *
 * @module
 */

/**
 * Word offsets of the header of the `meta` array shared by all attention kernels. The
 * per-worker segment offsets start right after it ({@link META_SEG_OFFS}, a constant, so a
 * worker's first read does not wait for the header), and each segment is one record of
 * {@link SEG_WORDS} words holding everything its workgroup needs: the memory reads before the
 * first K/V load form a chain of two (offsets and header, then the record).
 */
export const META = {
  B: 0,
  Hq: 1,
  Hkv: 2,
  Sq: 3,
  N: 4,
  D: 5,
  group: 6,
  rowsPerBlock: 7,
  qBlocks: 8,
  causal: 9,
  scaleBits: 10,
  negInfBits: 11,
  numWorkers: 12,
  segsOff: 13,
  unitRows: 14,
  numItems: 15,
  itemsOff: 16,
  partOOff: 17,
  reduceNx: 18,
  reduceChunks: 19,
  probShift: 20,
  size: 21,
} as const;

/** Where worker w's segments begin in the segment list: `meta[META_SEG_OFFS + w]` (W + 1 words). */
export const META_SEG_OFFS = META.size;

/**
 * Words of one segment record at `meta[segsOff + 9·s]`: the unit; its first and end key
 * (`[k0, k1)`, tiles × tile size, the end clamped to the sequence length); its partial slot
 * (or 0xffffffff); the sequence length of the unit's batch; for a piece of a cut unit, the unit's
 * reduce item, its first partial-list word and its number of pieces (the in-kernel merge); and in
 * runs of pieces (`_fold_runs.ts`: piece runs or the subgroup-fold order, where a record is a run
 * of pieces and words 5–7 are the unit's counter, first publication slot and publications) the keys
 * of a piece, with bit 31 set where the run starts the unit.
 */
export const SEG_WORDS = 9;

/** Storage element type in WGSL. */
export type Elem = "f32" | "f16";

/** Bits of f32 −∞, the header's `negInfBits` word (WGSL has no −∞ literal). */
export const NEG_INF_BITS = 0xff800000;

/**
 * The shift K of the probabilities the kernels accumulate, for rows of at most `maxKeys` keys
 * (terms): `p = exp(s − m) · 2^-K` with `2^K ≥ maxKeys`, so a running state's l is at most 1
 * and every partial sum of its o (Σ p·v, slots and merges alike) at most max |v| — finite
 * wherever V is, even at float32's max, where unscaled sums reached (keys) · max |v| (+∞
 * from 6e36 over 256 keys). The merges are linear in the states and need no change; o / l
 * keeps its bits (powers of two) and the lse reads `l · 2^K`. The cost is one multiply per
 * probability, nothing per dimension. At the other end a term p·v now underflows below
 * 2^-126 · 2^K rather than 2^-126: values under 2^-126 · maxKeys, as where o is kept
 * normalised (weights p / l ≥ 1 / keys).
 */
export function probShift(maxKeys: number): number {
  return 32 - Math.clz32(Math.max(1, maxKeys) - 1);
}

/** WGSL of `psc` = 2^-K and `pun` = 2^K for the u32 shift K in `shift` ({@link probShift}). */
export function probScales(shift: string, ind: string): string {
  return `${ind}let psc = bitcast<f32>((127u - ${shift}) << 23u);
${ind}let pun = bitcast<f32>((127u + ${shift}) << 23u);`;
}

/** Shared prologue: reads the problem sizes from meta. */
export function sizes(): string {
  return `
  let B = mt[${META.B}];
  let Hq = mt[${META.Hq}];
  let Hkv = mt[${META.Hkv}];
  let Sq = mt[${META.Sq}];
  let N = mt[${META.N}];
  let group = mt[${META.group}];
  let rpb = mt[${META.rowsPerBlock}];
  let qBlocks = mt[${META.qBlocks}];
  let causal = mt[${META.causal}] != 0u;
  let scale = bitcast<f32>(mt[${META.scaleBits}]);
  let ninf = bitcast<f32>(mt[${META.negInfBits}]);
  let R = mt[${META.unitRows}];
  let partOOff = mt[${META.partOOff}];
  // A quiet NaN from a runtime value (a NaN literal is not valid WGSL).
  let qnan = bitcast<f32>(mt[${META.negInfBits}] | 0x7fc00000u);
${probScales(`mt[${META.probShift}]`, "  ")}`;
}

/**
 * Opens the loop over the worker's segments (every kernel walks the uploaded schedule the
 * same way): the unit, its partial slot (or -1 as u32), batch, kv-head, query block, the
 * key range `[k0, k1)` of the segment and the unit's first K/V row. The caller closes it.
 */
export function segmentLoop(): string {
  return `  let segA = mt[${META_SEG_OFFS}u + w];
  let segB = mt[${META_SEG_OFFS}u + w + 1u];
  for (var si = segA; si < segB; si++) {
${segmentFields()}`;
}

/** The fields of segment `si` (see {@link segmentLoop}), one `let` each, indented 4. */
export function segmentFields(): string {
  return `    let sb = mt[${META.segsOff}] + si * ${SEG_WORDS}u;
    let unit = mt[sb];
    let k0 = mt[sb + 1u];
    let k1 = mt[sb + 2u];
    let part = mt[sb + 3u];
    let len = mt[sb + 4u];
    let qb = unit % qBlocks;
    let h = (unit / qBlocks) % Hkv;
    let b = unit / qBlocks / Hkv;
    let kvRow0 = (b * Hkv + h) * N;`;
}
