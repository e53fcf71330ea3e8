/**
 * WGSL of the attention kernels, generated from a small configuration so every pipeline is
 * specialised (head dim, rows, storage types, unroll) and its cache key says exactly what the
 * text depends on.
 *
 * All kernels read one `meta` array of u32 (see {@link META}): the problem sizes, the schedule
 * (per-worker segment offsets and one record a segment) and the list of units the reduce step
 * finishes. One upload, one source of truth.
 *
 * Three main kernels execute a schedule, one workgroup per worker, segment after segment:
 *
 * - **subgroup kernel** (needs `subgroups`; D a multiple of 32): `L` lanes share one key, each
 *   lane owning `D / L` dims of q, of the running output and of the key/value rows it loads
 *   with wide vector reads (8 halves as a `vec4<u32>`, unpacked with `unpack2x16float`, so f16
 *   K/V need no `enable f16`). A subgroup holds `subgroupSize / L` keys at a time and keeps
 *   one running max per query row shared by the whole subgroup (`subgroupMax` once per batch
 *   of `U` keys), so no barrier is needed while the keys stream; K and V loads of a batch are
 *   issued before any math. The `U · R` dot products of a slot are finished by a butterfly
 *   (each xor step halves the values a lane carries), so a lane ends with whole scores and
 *   one exp each; the probabilities are broadcast back with `subgroupShuffle`. At the end of a
 *   segment the slots of a subgroup are summed by shuffles (same max, so plain sums), and the
 *   subgroups are merged through workgroup memory in a fixed order (deterministic). Units with
 *   more rows than fit in registers (prefill, large GQA groups) are covered in passes of R
 *   rows, each pass streaming the segment's keys again. Two options, off by default (10–35
 *   points slower on an H200; bench/NOTES.md, run 4): row groups `G` put a unit's rows on
 *   different subgroups that stream the same keys, and staged tiles load the next tile of K/V
 *   coalesced into registers while the subgroups compute on the current one from workgroup
 *   memory. Non-finite values follow the float64 reference: a visible NaN/+∞ score poisons
 *   its row (a bit-tested mask, carried as l = NaN in partial states), and keys hidden from a
 *   row are selected out of P·V in a segment's last batches (`0 · ∞ = NaN`).
 * - **workgroup-memory kernel** (no subgroups; D a power of two 16–256, rows·D ≤ 512): tiles
 *   of keys in two phases — partial dots per (key, dim slice), one barrier, then P·V per
 *   (key group, 4 dims) with an online softmax per key group — groups merged at the end.
 * - **generic kernel** (anything else): one thread per query row, K/V staged in workgroup
 *   memory a few keys at a time, online softmax per key. Correct everywhere, slow.
 *
 * Loops over the head dim are unrolled when the WGSL is generated: besides being faster, this
 * keeps every loop's trip count small, and lavapipe (llvmpipe's gallivm, the CI adapter) stops
 * a loop after 65,535 iterations counted over the whole invocation — a per-key loop over D
 * silently truncated long sequences there.
 *
 * The reduce kernel merges the partial states of cut units in the listed order and writes the
 * units nobody visits (no keys) as the merge identity (out 0, lse −∞). The subgroup kernel
 * can merge cut units itself (`fm`): each piece's workgroup publishes its state, fences
 * (`storageBarrier`, device scope in wgpu) and counts it on the unit's integer counter; the
 * one that completes the count fences again and folds the pieces exactly as the reduce
 * kernel does (one shared generator), so the two give the same bits. The partial states are
 * then written and read with atomics only: a fence orders memory, but a plain load may still
 * be served from the reading multiprocessor's L1, which another multiprocessor's store does
 * not invalidate — on an H200 a flash-decoding row now and then merged a stale `(m, l)` line
 * (bench/_determinism.ts; bench/NOTES.md, session 5).
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
  size: 20,
} as const;

/** Where worker w's segments begin in the segment list: `meta[META_SEG_OFFS + w]` (W + 1 words). */
export const META_SEG_OFFS = META.size;

/**
 * Words of one segment record at `meta[segsOff + 8·s]`: the unit; its first and end key
 * (`[k0, k1)`, tiles × tile size, the end clamped to the sequence length); its partial slot
 * (or 0xffffffff); the sequence length of the unit's batch; and for a piece of a cut unit,
 * the unit's reduce item, its first partial-list word and its number of pieces (the in-kernel
 * merge).
 */
export const SEG_WORDS = 8;

/** Storage element type in WGSL. */
export type Elem = "f32" | "f16";

/**
 * Opens the loop over the worker's segments (every kernel walks the uploaded schedule the
 * same way): the unit, its partial slot (or -1 as u32), batch, kv-head, query block, the
 * key range `[k0, k1)` of the segment and the unit's first K/V row. The caller closes it.
 */
function segmentLoop(): string {
  return `  let segA = mt[${META_SEG_OFFS}u + w];
  let segB = mt[${META_SEG_OFFS}u + w + 1u];
  for (var si = segA; si < segB; si++) {
    let sb = mt[${META.segsOff}] + si * ${SEG_WORDS}u;
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

/** Shared prologue: reads the problem sizes from meta. */
function sizes(): string {
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
  let qnan = bitcast<f32>(mt[${META.negInfBits}] | 0x7fc00000u);`;
}

/**
 * Bit tests for non-finite values. Compilers may assume no NaN in float arithmetic (and WGSL's
 * `max` may return the other operand), so poisoned rows are tracked with integer tests on the
 * bits: a visible score that is NaN or +∞ makes its row NaN (the float64 reference's IEEE
 * result), and partial states carry that as l = NaN.
 */
const NONFINITE = `
fn poison_score(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7fffffffu) >= 0x7f800000u && b != 0xff800000u;
}
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
`;

/** Keys visible to query row `i` of a sequence of `len` keys (bottom-right causal). */
const VISIBLE = NONFINITE + `
fn visible(len: u32, Sq: u32, i: u32, causal: bool) -> u32 {
  if (!causal) { return len; }
  // len − Sq + i + 1, clamped to [0, len] without unsigned wrap-around.
  let a = len + i + 1u;
  return select(min(a - Sq, len), 0u, a <= Sq);
}
`;

/**
 * Bindings of the three main kernels (one layout, so the executor binds them alike): meta,
 * q, K, V (`kvT`: the storage element or the wide load type), out, lse, partial states —
 * as f32, or as u32 words accessed only atomically where workgroups of the same dispatch
 * read each other's partials (`atomicPart`, the in-kernel merge; see {@link partStore}).
 */
function mainBindings(q: Elem, kvT: string, atomicPart = false): string {
  return `@group(0) @binding(0) var<storage, read> mt: array<u32>;
@group(0) @binding(1) var<storage, read> Q: array<${q}>;
@group(0) @binding(2) var<storage, read> K: array<${kvT}>;
@group(0) @binding(3) var<storage, read> V: array<${kvT}>;
@group(0) @binding(4) var<storage, read_write> O: array<${q}>;
@group(0) @binding(5) var<storage, read_write> LSE: array<f32>;
@group(0) @binding(6) var<storage, read_write> PART: ${
    atomicPart ? "array<atomic<u32>>" : "array<f32>"
  };`;
}

/**
 * WGSL storing f32 `v` at partial word `i`. With `atomic` the store is an `atomicStore` of its
 * bits: the in-kernel merge reads partials another workgroup of the same dispatch wrote, and
 * plain loads may be served by the reading multiprocessor's L1, which is not coherent with
 * other multiprocessors' stores (WGSL orders non-atomic accesses only within a workgroup).
 * Atomic accesses go to L2.
 */
function partStore(i: string, v: string, atomic: boolean): string {
  return atomic ? `atomicStore(&PART[${i}], bitcast<u32>(${v}));` : `PART[${i}] = ${v};`;
}

/** WGSL loading partial word `i` as f32 (atomically with `atomic`, see {@link partStore}). */
function partLoad(i: string, atomic: boolean): string {
  return atomic ? `bitcast<f32>(atomicLoad(&PART[${i}]))` : `PART[${i}]`;
}

/**
 * WGSL lines merging the partial states of a workgroup's slots (subgroups or key groups) in
 * slot order, deterministic: each slot's `(m, l)` per row is in `ml` already (after a
 * barrier); the common max `M`, the total `Lt` and NaN flag `rbad` of the thread's row
 * `row`, then the outputs in `rounds` rounds of `perRound` slots through `wo` (the slots
 * for which `writer` holds run `stores`, with `sl` their place in the round), summed into
 * `acc` with weights exp(m − M). Threads with `act` own one (row, vec4 of dims `fj`).
 */
function mergeSlots(a: {
  ml: string;
  count: string;
  rows: number;
  row: string;
  rounds: string;
  perRound: number;
  writer: string;
  slot: string;
  stores: readonly string[];
  /** vec4s of a row of `wo` (D / 4). */
  d4: number;
}): string[] {
  const { ml, count, rows, row, perRound: K } = a;
  return [
    `    var M = ninf;`,
    `    var Lt = 0.0;`,
    `    var acc = vec4<f32>(0.0);`,
    `    var rbad = false;`,
    `    if (act) {`,
    `      for (var s = 0u; s < ${count}; s++) { M = max(M, ${ml}[s * ${rows}u + ${row}].x); }`,
    `      for (var s = 0u; s < ${count}; s++) {`,
    `        let ml = ${ml}[s * ${rows}u + ${row}];`,
    `        rbad = rbad || is_nan(ml.y);`,
    `        Lt += select(0.0, exp(ml.x - M), ml.x != ninf) * ml.y;`,
    `      }`,
    `    }`,
    `    for (var rd = 0u; rd < ${a.rounds}; rd++) {`,
    `      if (${a.writer}) {`,
    `        let sl = ${a.slot};`,
    ...a.stores.map((x) => `        ${x}`),
    `      }`,
    `      workgroupBarrier();`,
    `      if (act) {`,
    `        let cnt = min(${K}u, ${count} - rd * ${K}u);`,
    `        for (var s = 0u; s < cnt; s++) {`,
    `          let mS = ${ml}[(rd * ${K}u + s) * ${rows}u + ${row}].x;`,
    `          let wgt = select(0.0, exp(mS - M), mS != ninf);`,
    `          acc += wgt * wo[(s * ${rows}u + ${row}) * ${a.d4}u + fj];`,
    `        }`,
    `      }`,
    `      workgroupBarrier();`,
    `    }`,
  ];
}

/** Configuration of the subgroup (decode) kernel. */
export interface SgConfig {
  /** Head dim (multiple of 32). */
  D: number;
  /**
   * Rows per pass, compile-time: all rows of a unit (GQA group × rows per query block) for
   * decode; a power of two for longer query blocks, which the kernel covers in several passes.
   */
  R: number;
  /** K/V storage. */
  kv: Elem;
  /** Q and out storage. */
  q: Elem;
  /** Threads per workgroup. */
  wg: number;
  /** Lanes per key (power of two dividing the subgroup size). */
  L: number;
  /** Keys per slot per loop iteration. */
  U: number;
  /** Subgroup states merged per round in workgroup memory. */
  nsMax: number;
  /** Load the next batch of keys before the math of this one (register double-buffering). */
  pf: boolean;
  /** Butterfly reduction of the dot products (U·R must be a power of two). */
  bf: boolean;
  /** Rotated loop: the first batch loads before q, each next batch after the math. */
  rot: boolean;
  /**
   * Row groups (a power of two; 1 = off): the pass's `R · G` rows are split across the
   * subgroups of the workgroup, subgroup `sgid` taking rows `(sgid % G)·R …` of every key the
   * subgroups `sgid / G` stream. The G row groups read the same keys, so K/V come from DRAM
   * once and from L1/L2 G − 1 more times; each lane holds `R · D / L` values of q and of the
   * output instead of `R · G · D / L`. Needs at least G subgroups per workgroup.
   */
  G: number;
  /**
   * Keys per workgroup-staged tile (0 = off; else a multiple of `S · U`, S = wg / L / G):
   * the workgroup loads tile t + 1 of K and V with coalesced `wg`-wide reads into registers
   * while the subgroups do the math of tile t from workgroup memory, so loads stay in flight
   * during the math and each key costs registers once per workgroup (not once per row group
   * or per U-batch of a slot). Excludes `pf` and `rot`.
   */
  tile: number;
  /**
   * Select away the P·V terms of keys hidden from some row of the unit in the batches that
   * hold any (past the first row's causal end), since `0 · ∞ = NaN`: needed where the rows of
   * a unit end at different keys (causal prefill) and with staged tiles; decode loads zero
   * for keys past the segment instead (see `vUse`).
   */
  tm: boolean;
  /**
   * Vote before the running max: the subgroup reduces its batch's scores to a new max per row
   * (`subgroupMax`, a chain of shuffles per row) only when some lane holds a score above the
   * row's running max (`subgroupAny`, one vote); otherwise the max is unchanged and the
   * reduction is skipped. Same results bit for bit (a max over values ≤ m is m). Past the
   * first batches of a segment a new max is rare, so most batches skip it.
   */
  lz: boolean;
  /**
   * Merge cut units in this kernel (one dispatch): a worker that wrote a partial state counts
   * it on the unit's counter (`atomicAdd` after a `storageBarrier`); the worker that brings
   * the count to the unit's number of pieces merges them in the listed order, as the reduce
   * kernel would (same fold, same results bit for bit). Binds the counters (one zeroed u32 a
   * cut unit) at binding 7. No workgroup waits on another: the last to arrive does the work.
   * The partial states are then u32 words stored and loaded atomically (L2, not a stale L1).
   */
  fm: boolean;
}

/** Pipeline cache key of a subgroup kernel. */
export function sgKey(c: SgConfig): string {
  return `attn-sg:D${c.D}:R${c.R}:kv${c.kv}:q${c.q}:wg${c.wg}:L${c.L}:U${c.U}:ns${c.nsMax}:pf${c.pf}:bf${c.bf}:rot${c.rot}:G${c.G}:T${c.tile}:tm${c.tm}:lz${c.lz}:fm${c.fm}`;
}

/** Elements per vector load of K/V for the subgroup kernel. */
export function sgLoadWidth(c: Pick<SgConfig, "D" | "L" | "kv">): number {
  const E = c.D / c.L;
  if (c.kv === "f32") return 4;
  return E % 8 === 0 ? 8 : 4;
}

/** WGSL of the subgroup kernel. */
export function sgWgsl(c: SgConfig): string {
  const { D, R, wg, L, U, nsMax, G } = c;
  const KT = c.tile; // keys per staged tile (0: off)
  const RT = R * G; // rows per pass over all row groups
  const E = D / L; // dims per lane
  const W = sgLoadWidth(c); // elements per load
  const CH = E / W; // loads per lane per row
  const V4 = W / 4; // vec4<f32> per load
  const NV4 = E / 4; // vec4<f32> per lane per row
  const S = wg / L / G; // key slots per row group
  const UPR = D / W; // load units per K row
  const D4 = D / 4;
  const ldT = c.kv === "f32" ? "vec4<f32>" : W === 8 ? "vec4<u32>" : "vec2<u32>";
  const unpack = (a: string): string[] => {
    if (c.kv === "f32") return [a];
    if (W === 8) {
      return [
        `vec4<f32>(unpack2x16float(${a}.x), unpack2x16float(${a}.y))`,
        `vec4<f32>(unpack2x16float(${a}.z), unpack2x16float(${a}.w))`,
      ];
    }
    return [`vec4<f32>(unpack2x16float(${a}.x), unpack2x16float(${a}.y))`];
  };
  // V words of a key that may lie past the segment (the index was clamped to its last key):
  // zero there, so the P·V term of that re-read is 0 · 0 rather than 0 · V, which is NaN when the
  // last key's value is ±∞. A select on the loaded words, per key, not per row: branch-free.
  // Applied where the words are used, not where they are loaded: a select right after a
  // prefetching load waits for it and serialises the rotated loop (−13 points on GQA, runs 10
  // and 12).
  const vUse = (x: string, key: string) => `select(${ldT}(), ${x}, ${key} < kend)`;
  const vLoad = (idx: string, key: string) => vUse(`V[${idx}]`, key);
  // Row-relative vec4 index of lane-local vec4 j.
  const v4idx = (j: number) => `(${Math.floor(j / V4) * L}u + lane) * ${V4}u + ${j % V4}u`;
  const rows = [...Array(R).keys()];
  const us = [...Array(U).keys()];
  const js = [...Array(NV4).keys()];
  const chs = [...Array(CH).keys()];
  const lines: string[] = [];
  const p = (s: string) => lines.push(s);

  // Per-row setup of one segment.
  for (const r of rows) {
    p(`    let rr${r} = rc + ${G > 1 ? `rgrp * ${R}u + ` : ""}${r}u;`);
    p(`    let i${r} = qb * rpb + rr${r} % rpb;`);
    p(`    let ok${r} = rr${r} < R && i${r} < Sq;`);
    p(`    let qrow${r} = select(0u, (b * Hq + h * group + rr${r} / rpb) * Sq + i${r}, ok${r});`);
    p(`    let e${r} = select(0u, min(k1, visible(len, Sq, i${r}, causal)), ok${r});`);
  }
  if (G > 1) {
    // The key loop holds subgroup operations, so its bound must be uniform over the
    // workgroup: the last key any row of the pass sees (rows beyond their own end mask).
    const all = [...Array(RT).keys()];
    for (const x of all) {
      p(`    let ia${x} = qb * rpb + (rc + ${x}u) % rpb;`);
      p(
        `    let ea${x} = select(0u, min(k1, visible(len, Sq, ia${x}, causal)), rc + ${x}u < R && ia${x} < Sq);`,
      );
    }
    p(`    let kend = max(${all.map((x) => `ea${x}`).join(", max(")}, 0u${")".repeat(RT)};`);
    p(`    let emin = min(${
      all.map((x) => `select(kend, ea${x}, rc + ${x}u < R && ia${x} < Sq)`).join(", min(")
    }, kend${")".repeat(RT)};`);
  } else {
    p(`    let kend = max(${rows.map((r) => `e${r}`).join(", max(")}, 0u${")".repeat(R)};`);
  }
  // Keys below emin are visible to every (valid) row of the pass.
  if (G === 1) {
    p(`    let emin = min(${rows.map((r) => `select(kend, e${r}, ok${r})`).join(", min(")}, kend${
      ")".repeat(R)
    };`);
  }
  const TU = KT * UPR; // load units per staged tile (K or V)
  const NLD = Math.ceil(TU / wg); // staged load units per thread
  const lds = [...Array(NLD).keys()];
  const stage = (t: string, indent: string) => {
    // Coalesced: thread tid takes units tid, tid + wg, … of the tile's contiguous rows; past
    // the segment's last key the index clamps (re-read from cache, masked by the scores).
    for (const i of lds) {
      p(`${indent}let gx${i} = kvRow0 * ${UPR}u + min(${t} * ${UPR}u + tid + ${i * wg}u, klu);`);
      p(`${indent}sk${i} = K[gx${i}];`);
      p(`${indent}sv${i} = V[gx${i}];`);
    }
  };
  if (KT) {
    p(`    let klu = max(kend, 1u) * ${UPR}u - 1u;`);
    for (const i of lds) {
      p(`    var sk${i}: ${ldT};`);
      p(`    var sv${i}: ${ldT};`);
    }
    stage("k0", "    ");
  }
  if (c.pf || c.rot) {
    // The first batch is loaded before q, so its latency overlaps q's. With \`pf\` each batch
    // then loads the next before its math (two batches of registers); with \`rot\` after it
    // (the loop rotated: same registers, only the segment start gains). Past the end the
    // index clamps to the last key, which every lane then reads from cache.
    p(`    let klast = max(kend, 1u) - 1u;`);
    for (const u of us) {
      p(`    let kr0_${u} = (kvRow0 + min(k0 + ${u * S}u + slot, klast)) * ${UPR}u + lane;`);
      for (const ch of chs) p(`    var nka${u}_${ch} = K[kr0_${u} + ${ch * L}u];`);
      for (const ch of chs) p(`    var nva${u}_${ch} = V[kr0_${u} + ${ch * L}u];`);
    }
  }
  for (const r of rows) {
    for (const j of js) {
      const base = `qrow${r} * ${D}u + (${v4idx(j)}) * 4u`;
      p(
        `    let q${r}_${j} = scale * vec4<f32>(f32(Q[${base}]), f32(Q[${base} + 1u]), f32(Q[${base} + 2u]), f32(Q[${base} + 3u]));`,
      );
      p(`    var o${r}_${j} = vec4<f32>(0.0);`);
    }
    p(`    var m${r} = ninf;`);
    p(`    var l${r} = 0.0;`);
  }
  // Rows (bits) with a visible NaN/+∞ score seen by this lane; OR-ed over the subgroup once
  // per segment.
  p(`    var bad = 0u;`);
  if (KT) {
    p(`    for (var t0 = k0; t0 < kend; t0 += ${KT}u) {`);
    p(`    workgroupBarrier();`);
    for (const i of lds) {
      const st = `      Kt[tid + ${i * wg}u] = sk${i};
      Vt[tid + ${i * wg}u] = sv${i};`;
      p(
        (i + 1) * wg > TU
          ? `    if (tid + ${i * wg}u < ${TU}u) {
${st}
    }`
          : st.replace(/^ {2}/gm, ""),
      );
    }
    p(`    workgroupBarrier();`);
    stage(`(t0 + ${KT}u)`, "    ");
    p(`    let tend = min(t0 + ${KT}u, kend);`);
  }
  // The key loop. With the tail mask (\`tm\`) it runs in two loops over the same body: batches
  // whose keys every row sees (below emin), then the last ones, where a key may be past a
  // row's causal end or a clamped re-read past the segment: p = 0 there, but 0 · ∞ = NaN, so
  // those P·V terms are selected away. The hot loop stays branch-free (a branch inside it
  // measured up to 25 % slower on GQA, run 8).
  // The new running max of each row from the lane's candidate (its scores' max) and the
  // rescale factor of the old state. With `lz`, one vote first: the shuffle chains of
  // `subgroupMax` run only when some lane's candidate exceeds a running max.
  const newMax = (cms: string[]) => {
    cms.forEach((cm, r) => p(`      let cm${r} = ${cm};`));
    if (c.lz) {
      for (const r of rows) p(`      var mn${r} = m${r};`);
      p(`      if (subgroupAny(${rows.map((r) => `cm${r} > m${r}`).join(" || ")})) {`);
      for (const r of rows) p(`        mn${r} = max(m${r}, subgroupMax(cm${r}));`);
      p(`      }`);
    } else {
      for (const r of rows) p(`      let mn${r} = max(m${r}, subgroupMax(cm${r}));`);
    }
    for (const r of rows) {
      p(`      let al${r} = select(0.0, exp(m${r} - mn${r}), m${r} != ninf);`);
    }
  };
  const body = (masked: boolean) => {
    for (const u of us) {
      p(`      let key${u} = base + ${u * S}u + slot;`);
      if (KT) {
        p(`      let kl${u} = (base - t0 + ${u * S}u + slot) * ${UPR}u + lane;`);
        for (const ch of chs) p(`      let ka${u}_${ch} = Kt[kl${u} + ${ch * L}u];`);
        for (const ch of chs) p(`      let va${u}_${ch} = Vt[kl${u} + ${ch * L}u];`);
      } else if (c.rot) {
        for (const ch of chs) p(`      let ka${u}_${ch} = nka${u}_${ch};`);
        for (const ch of chs) p(`      let va${u}_${ch} = ${vUse(`nva${u}_${ch}`, `key${u}`)};`);
      } else if (c.pf) {
        for (const ch of chs) p(`      let ka${u}_${ch} = nka${u}_${ch};`);
        for (const ch of chs) p(`      let va${u}_${ch} = ${vUse(`nva${u}_${ch}`, `key${u}`)};`);
        p(`      let kn${u} = (kvRow0 + min(key${u} + ${S * U}u, klast)) * ${UPR}u + lane;`);
        for (const ch of chs) p(`      nka${u}_${ch} = K[kn${u} + ${ch * L}u];`);
        for (const ch of chs) p(`      nva${u}_${ch} = V[kn${u} + ${ch * L}u];`);
      } else {
        p(`      let kr${u} = (kvRow0 + min(key${u}, kend - 1u)) * ${UPR}u + lane;`);
        for (const ch of chs) p(`      let ka${u}_${ch} = K[kr${u} + ${ch * L}u];`);
        for (const ch of chs) {
          p(`      let va${u}_${ch} = ${vLoad(`kr${u} + ${ch * L}u`, `key${u}`)};`);
        }
      }
    }
    for (const u of us) {
      const kf = chs.flatMap((ch) => unpack(`ka${u}_${ch}`));
      kf.forEach((x, j) => p(`      let kf${u}_${j} = ${x};`));
      for (const r of rows) {
        p(`      var s${u}_${r} = ${js.map((j) => `dot(q${r}_${j}, kf${u}_${j})`).join(" + ")};`);
      }
    }
    const NV = U * R;
    if (c.bf) {
      // Butterfly: the U·R partial dot products of a slot are reduced together, each xor step
      // halving the values a lane carries, so a lane ends with whole scores for NV/L of them
      // (or one, shared by L/NV lanes) — NV − 1 shuffles instead of NV·log2 L, and one exp per
      // value instead of one per lane.
      let cur = us.flatMap((u) => rows.map((r) => `s${u}_${r}`));
      const halves: { off: number; half: number }[] = [];
      let step = 0;
      for (let off = L / 2; off >= 1; off /= 2, step++) {
        if (cur.length === 1) {
          p(`      ${cur[0]} += subgroupShuffleXor(${cur[0]}, ${off}u);`);
          continue;
        }
        const half = cur.length / 2;
        p(`      let up${step} = (lane & ${off}u) != 0u;`);
        const next: string[] = [];
        for (let i = 0; i < half; i++) {
          const nm = `b${step}_${i}`;
          p(
            `      var ${nm} = select(${cur[i]}, ${
              cur[i + half]
            }, up${step}) + subgroupShuffleXor(select(${cur[i + half]}, ${
              cur[i]
            }, up${step}), ${off}u);`,
          );
          next.push(nm);
        }
        halves.push({ off: step, half });
        cur = next;
      }
      const cf = cur.length; // values per lane
      const idxBase = halves.map((h) => `select(0u, ${h.half}u, up${h.off})`).join(" + ") || "0u";
      p(`      let vb = ${idxBase};`);
      cur.forEach((x, j) => {
        p(`      let vi${j} = vb + ${j}u;`);
        p(`      let vr${j} = vi${j} % ${R}u;`);
        p(`      let vk${j} = base + (vi${j} / ${R}u) * ${S}u + slot;`);
        const e = rows.slice(1).reduce((acc, r) => `select(${acc}, e${r}, vr${j} == ${r}u)`, "e0");
        p(`      let sv${j} = select(ninf, ${x}, vk${j} < ${e});`);
        p(`      bad |= select(0u, 1u << vr${j}, poison_score(sv${j}));`);
      });
      newMax(rows.map((r) => {
        const cand = cur.map((_, j) => `select(ninf, sv${j}, vr${j} == ${r}u)`);
        return cand.reduce((acc, x) => `max(${acc}, ${x})`);
      }));
      cur.forEach((_, j) => {
        const mn = rows.slice(1).reduce(
          (acc, r) => `select(${acc}, mn${r}, vr${j} == ${r}u)`,
          "mn0",
        );
        p(`      let pe${j} = select(0.0, exp(sv${j} - ${mn}), sv${j} != ninf);`);
      });
      p(`      let slot0 = sgi - lane;`);
      for (const u of us) {
        for (const r of rows) {
          const v = u * R + r;
          const holder = cf > 1 ? Math.floor(v / cf) : v * (L / NV);
          p(`      let p${u}_${r} = subgroupShuffle(pe${v % cf}, slot0 + ${holder}u);`);
        }
      }
    } else {
      for (let off = 1; off < L; off *= 2) {
        for (const u of us) {
          for (const r of rows) p(`      s${u}_${r} += subgroupShuffleXor(s${u}_${r}, ${off}u);`);
        }
      }
      for (const u of us) {
        for (const r of rows) {
          p(`      s${u}_${r} = select(ninf, s${u}_${r}, key${u} < e${r});`);
          p(`      bad |= select(0u, ${1 << r}u, poison_score(s${u}_${r}));`);
        }
      }
      newMax(rows.map((r) => us.map((u) => `s${u}_${r}`).reduce((a, x) => `max(${a}, ${x})`)));
      for (const r of rows) {
        for (const u of us) {
          p(`      let p${u}_${r} = select(0.0, exp(s${u}_${r} - mn${r}), s${u}_${r} != ninf);`);
        }
      }
    }
    for (const u of us) {
      const vf = chs.flatMap((ch) => unpack(`va${u}_${ch}`));
      vf.forEach((x, j) => p(`      let vf${u}_${j} = ${x};`));
    }
    for (const r of rows) {
      p(`      l${r} = l${r} * al${r} + ${us.map((u) => `p${u}_${r}`).join(" + ")};`);
    }
    for (const r of rows) {
      for (const j of js) {
        const term = (u: number) =>
          masked
            ? `select(vec4<f32>(0.0), p${u}_${r} * vf${u}_${j}, key${u} < e${r})`
            : `p${u}_${r} * vf${u}_${j}`;
        p(`      o${r}_${j} = o${r}_${j} * al${r} + ${us.map(term).join(" + ")};`);
      }
    }
    for (const r of rows) p(`      m${r} = mn${r};`);
    if (c.rot) {
      for (const u of us) {
        p(`      let kn${u} = (kvRow0 + min(base + ${
          S * U + u * S
        }u + slot, klast)) * ${UPR}u + lane;`);
        for (const ch of chs) p(`      nka${u}_${ch} = K[kn${u} + ${ch * L}u];`);
        for (const ch of chs) p(`      nva${u}_${ch} = V[kn${u} + ${ch * L}u];`);
      }
    }
  };
  const start = KT ? "t0" : "k0";
  const stop = KT ? "tend" : "kend";
  if (c.tm) {
    p(`    var base = ${start};`);
    p(`    for (; base + ${S * U}u <= min(${stop}, emin); base += ${S * U}u) {`);
    body(false);
    p(`    }`);
    p(`    for (; base < ${stop}; base += ${S * U}u) {`);
    body(true);
    p(`    }`);
  } else {
    p(`    for (var base = ${start}; base < ${stop}; base += ${S * U}u) {`);
    body(false);
    p(`    }`);
  }
  if (KT) p(`    }`);
  p(`    let badw = subgroupOr(bad);`);
  // Sum the slots of a subgroup (they share the max).
  p(`    for (var off = ${L}u; off < sgs; off <<= 1u) {`);
  for (const r of rows) {
    p(`      l${r} += subgroupShuffleXor(l${r}, off);`);
    for (const j of js) p(`      o${r}_${j} += subgroupShuffleXor(o${r}_${j}, off);`);
  }
  p(`    }`);
  p(`    if (sgi == 0u) {`);
  for (const r of rows) {
    p(`      wml[sgk * ${RT}u + ${
      G > 1 ? `rgrp * ${R}u + ` : ""
    }${r}u] = vec2<f32>(m${r}, select(l${r}, qnan, (badw & ${1 << r}u) != 0u));`);
  }
  p(`    }`);
  p(`    workgroupBarrier();`);
  const stores: string[] = [];
  for (const r of rows) {
    const row = `${G > 1 ? `rgrp * ${R}u + ` : ""}${r}u`;
    for (const j of js) {
      stores.push(`wo[(sl * ${RT}u + ${row}) * ${D4}u + ${v4idx(j)}] = o${r}_${j};`);
    }
  }
  mergeSlots({
    ml: "wml",
    count: "nsr",
    rows: RT,
    row: "fr0",
    rounds: "rounds",
    perRound: nsMax,
    writer: `sgk / ${nsMax}u == rd && sgi < ${L}u`,
    slot: `sgk % ${nsMax}u`,
    stores,
    d4: D4,
  }).forEach(p);

  const f16 = c.kv === "f16" || c.q === "f16";
  return `${c.q === "f16" ? "enable f16;" : ""}
// attention, subgroup kernel: ${sgKey(c)}${f16 ? " (f16 K/V unpacked from u32)" : ""}
${mainBindings(c.q, ldT, c.fm)}${
    c.fm
      ? `
@group(0) @binding(7) var<storage, read_write> CNT: array<atomic<u32>>;
var<workgroup> wlast: u32;`
      : ""
  }
var<workgroup> wml: array<vec2<f32>, ${(wg / 8) * R}>;
var<workgroup> wo: array<vec4<f32>, ${nsMax * RT * D4}>;
var<workgroup> wns: u32;
${
    KT
      ? `var<workgroup> Kt: array<${ldT}, ${KT * UPR}>;
var<workgroup> Vt: array<${ldT}, ${KT * UPR}>;`
      : ""
  }
${VISIBLE}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32, @builtin(subgroup_size) sgs: u32,
        @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_id) sgid: u32,
        @builtin(num_subgroups) nsg: u32) {
  if (tid == 0u) { wns = nsg; }
  let ns = workgroupUniformLoad(&wns);
  // Subgroups per row group (each row group's states are merged among themselves).
  let nsr = ns / ${G}u;
  let rounds = (nsr + ${nsMax - 1}u) / ${nsMax}u;
  let w = wid.x + wid.y * nwg.x;
  if (w >= mt[${META.numWorkers}]) { return; }
  ${sizes()}
  let lane = sgi % ${L}u;
  let rgrp = sgid % ${G}u;
  let sgk = sgid / ${G}u;
  let slot = sgk * (sgs / ${L}u) + sgi / ${L}u;
  // The thread's item of the final merge: row fr, vec4 fj of the output.
  let act0 = tid < ${RT * D4}u;
  let fr0 = min(tid / ${D4}u, ${RT - 1}u);
  let fj = tid % ${D4}u;
${segmentLoop()}
    // Rows of the unit in passes of ${RT} (one pass for decode); a later pass re-reads the
    // segment's keys, from cache.
    for (var rc = 0u; rc < R; rc += ${RT}u) {
    let fr = rc + fr0;
    let act = act0 && fr < R;
${lines.join("\n")}
${writeOut(D, c.q, c.fm)}
    }
${c.fm ? fusedMerge(D, c.q, wg) : ""}  }
}
`;
}

/** The end of a segment: row `fr`, dims `4·fj…` of the merged state `(M, Lt, acc)` go to the
 * output (normalised, with the lse) or to the segment's partial slot. */
function writeOut(D: number, q: Elem, atomicPart = false): string {
  const st = (i: string, v: string) => partStore(i, v, atomicPart);
  return `    if (act) {
      let i = qb * rpb + fr % rpb;
      if (i < Sq) {
        let row = (b * Hq + h * group + fr / rpb) * Sq + i;
        if (part == 0xffffffffu) {
          let inv = select(0.0, 1.0 / Lt, Lt != 0.0);
          let y = select(acc * inv, vec4<f32>(qnan), rbad);
          let ob = row * ${D}u + fj * 4u;
          O[ob] = ${q}(y.x);
          O[ob + 1u] = ${q}(y.y);
          O[ob + 2u] = ${q}(y.z);
          O[ob + 3u] = ${q}(y.w);
          if (fj == 0u) { LSE[row] = select(select(ninf, M + log(Lt), Lt != 0.0), qnan, rbad); }
        } else {
          let pr = part * R + fr;
          let pb = partOOff + pr * ${D}u + fj * 4u;
          ${st("pb", "acc.x")}
          ${st("pb + 1u", "acc.y")}
          ${st("pb + 2u", "acc.z")}
          ${st("pb + 3u", "acc.w")}
          if (fj == 0u) {
            ${st("pr * 2u", "M")}
            ${st("pr * 2u + 1u", "select(Lt, qnan, rbad)")}
          }
        }
      }
    }
`;
}

/** `n` generated lines (loops unrolled at generation time; see the module notes). */
function each(n: number, line: (i: number) => string): string {
  return Array.from({ length: n }, (_, i) => line(i)).join("\n");
}

/** Configuration of the generic kernel. */
export interface GenericConfig {
  /** Head dim. */
  D: number;
  /** K/V storage. */
  kv: Elem;
  /** Q and out storage. */
  q: Elem;
  /** Keys staged in workgroup memory at a time. */
  C: number;
}

/** Threads (query rows) per workgroup of the generic kernel. */
export const GENERIC_WG = 64;

/** Pipeline cache key of a generic kernel. */
export function genericKey(c: GenericConfig): string {
  return `attn-generic:D${c.D}:kv${c.kv}:q${c.q}:C${c.C}`;
}

/** WGSL of the generic kernel: any D, any rows per unit, no subgroups. */
export function genericWgsl(c: GenericConfig): string {
  const { D, C } = c;
  const f16 = c.kv === "f16" || c.q === "f16";
  return `${f16 ? "enable f16;" : ""}
// attention, generic kernel: ${genericKey(c)}
${mainBindings(c.q, c.kv)}
var<workgroup> ks: array<f32, ${C * D}>;
var<workgroup> vs: array<f32, ${C * D}>;
${VISIBLE}
@compute @workgroup_size(${GENERIC_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= mt[${META.numWorkers}]) { return; }
  ${sizes()}
  var qv: array<f32, ${D}>;
  var o: array<f32, ${D}>;
${segmentLoop()}
    let kvBase = kvRow0 * ${D}u;
    for (var r0 = 0u; r0 < R; r0 += ${GENERIC_WG}u) {
      let r = r0 + tid;
      let i = qb * rpb + r % rpb;
      let ok = r < R && i < Sq;
      let row = select(0u, (b * Hq + h * group + r / rpb) * Sq + i, ok);
      let e = select(0u, min(k1, visible(len, Sq, i, causal)), ok);
      let qb0 = row * ${D}u;
${each(D, (d) => `      qv[${d}] = scale * f32(Q[qb0 + ${d}u]);\n      o[${d}] = 0.0;`)}
      var m = ninf;
      var l = 0.0;
      var bad = false;
      for (var c0 = k0; c0 < k1; c0 += ${C}u) {
        workgroupBarrier();
        for (var x = tid; x < ${C * D}u; x += ${GENERIC_WG}u) {
          let key = min(c0 + x / ${D}u, k1 - 1u);
          let src = kvBase + key * ${D}u + x % ${D}u;
          ks[x] = f32(K[src]);
          vs[x] = f32(V[src]);
        }
        workgroupBarrier();
        let cn = select(0u, min(${C}u, e - c0), e > c0);
        for (var j = 0u; j < cn; j++) {
          let kb = j * ${D}u;
          var s = 0.0;
${each(D, (d) => `          s += qv[${d}] * ks[kb + ${d}u];`)}
          bad = bad || poison_score(s);
          if (s > m) {
            let a = select(0.0, exp(m - s), m != ninf);
            l *= a;
${each(D, (d) => `            o[${d}] *= a;`)}
            m = s;
          }
          let pj = select(0.0, exp(s - m), s != ninf);
          l += pj;
${each(D, (d) => `          o[${d}] += pj * vs[kb + ${d}u];`)}
        }
      }
      if (ok) {
        if (part == 0xffffffffu) {
          let inv = select(0.0, 1.0 / l, l != 0.0);
${each(D, (d) => `          O[qb0 + ${d}u] = ${c.q}(select(o[${d}] * inv, qnan, bad));`)}
          LSE[row] = select(select(ninf, m + log(l), l != 0.0), qnan, bad);
        } else {
          let pr = part * R + r;
          let pb = partOOff + pr * ${D}u;
${each(D, (d) => `          PART[pb + ${d}u] = o[${d}];`)}
          PART[pr * 2u] = m;
          PART[pr * 2u + 1u] = select(l, qnan, bad);
        }
      }
    }
  }
}
`;
}

/** Threads per workgroup of the reduce kernel. */
export const REDUCE_WG = 256;

/** Partials whose loads the reduce kernel issues together. */
const REDUCE_UNROLL = 16;

/** Partials whose loads the subgroup kernel's in-kernel merge issues together. */
const FUSED_UNROLL = 8;

/**
 * WGSL statements finishing one element of a cut unit: state element `d` of row `r` of the
 * unit folds the `count` partial slots listed at `mt[first …]` strictly in that order with
 * the pairwise merge, loading `U` partials before their fold (any `U` gives the same bits),
 * and writes output row `row` (normalised) and, for `d = 0`, its lse. Shared by the reduce
 * kernel and the subgroup kernel's in-kernel merge, so both give the same results.
 */
function finishCut(D: number, q: Elem, U: number, ind: string, atomicPart = false): string {
  const ld = (i: string) => partLoad(i, atomicPart);
  const ks = [...Array(U).keys()];
  const fold = (j: number) => `
    let mN = max(m, mb${j});
    if (mN != ninf) {
      let al = select(0.0, exp(m - mN), m != ninf);
      let be = select(0.0, exp(mb${j} - mN), mb${j} != ninf);
      l = al * l + be * lb${j};
      o = al * o + be * ob${j};
      m = mN;
    }`;
  const body = `var m = ninf;
var l = 0.0;
var o = 0.0;
var k = 0u;
var bad = false;
while (k < count) {
  let last = count - 1u;
${ks.map((j) => `  let p${j} = mt[first + min(k + ${j}u, last)] * R + r;`).join("\n")}
${
    ks.map((j) =>
      `  let mb${j} = ${ld(`p${j} * 2u`)};
  let lb${j} = ${ld(`p${j} * 2u + 1u`)};
  let ob${j} = ${ld(`partOOff + p${j} * ${D}u + d`)};`
    ).join("\n")
  }
${
    ks.map((j) =>
      `  if (k + ${j}u < count) {
    bad = bad || is_nan(lb${j});${fold(j)}
  }`
    ).join("\n")
  }
  k += ${U}u;
}
O[row * ${D}u + d] = ${q}(select(select(0.0, o / l, l != 0.0), qnan, bad));
if (d == 0u) { LSE[row] = select(select(ninf, m + log(l), l != 0.0), qnan, bad); }`;
  return body.split("\n").map((x) => ind + x).join("\n");
}

/**
 * WGSL of the reduce kernel: one workgroup per (cut or empty unit, chunk of `REDUCE_WG` state
 * elements). Each element folds its partials strictly in the listed order with the pairwise
 * merge; the loads of up to 16 partials are issued before their fold, so a unit cut into many
 * pieces costs a few memory round trips rather than one per piece.
 */
export function reduceWgsl(D: number, q: Elem): string {
  return `${q === "f16" ? "enable f16;" : ""}
// attention, reduce of cut units: D${D} q${q}
${NONFINITE}
@group(0) @binding(0) var<storage, read> mt: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<${q}>;
@group(0) @binding(2) var<storage, read_write> LSE: array<f32>;
@group(0) @binding(3) var<storage, read> PART: array<f32>;
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let wgi = wid.x + wid.y * mt[${META.reduceNx}];
  let chunks = mt[${META.reduceChunks}];
  let it = wgi / chunks;
  if (it >= mt[${META.numItems}]) { return; }
  ${sizes()}
  let x = (wgi % chunks) * ${REDUCE_WG}u + tid;
  if (x >= R * ${D}u) { return; }
  let ib = mt[${META.itemsOff}] + it * 3u;
  let unit = mt[ib];
  let first = mt[ib + 1u];
  let count = mt[ib + 2u];
  let qb = unit % qBlocks;
  let h = (unit / qBlocks) % Hkv;
  let b = unit / qBlocks / Hkv;
  let r = x / ${D}u;
  let d = x % ${D}u;
  let i = qb * rpb + r % rpb;
  if (i >= Sq) { return; }
  let row = (b * Hq + h * group + r / rpb) * Sq + i;
${finishCut(D, q, REDUCE_UNROLL, "  ")}
}
`;
}

/**
 * The subgroup kernel's in-kernel merge ({@link SgConfig.fm}), after a segment that wrote
 * partial slot `part` of unit (`b`, `h`, `qb`): publish the slot (a device-scope release —
 * wgpu's `storageBarrier` is `OpControlBarrier` with Device memory scope and acquire-release
 * semantics on storage memory), count it on the unit's counter, and if this workgroup is the
 * last of the unit's pieces, acquire (a second barrier) and finish the unit as the reduce
 * kernel would.
 */
function fusedMerge(D: number, q: Elem, wg: number): string {
  return `    if (part != 0xffffffffu) {
      storageBarrier();
      let itm = mt[sb + 5u];
      let first = mt[sb + 6u];
      let count = mt[sb + 7u];
      if (tid == 0u) { wlast = select(0u, 1u, atomicAdd(&CNT[itm], 1u) + 1u == count); }
      if (workgroupUniformLoad(&wlast) != 0u) {
        storageBarrier();
        for (var x = tid; x < R * ${D}u; x += ${wg}u) {
          let r = x / ${D}u;
          let d = x % ${D}u;
          let i = qb * rpb + r % rpb;
          if (i < Sq) {
            let row = (b * Hq + h * group + r / rpb) * Sq + i;
${finishCut(D, q, FUSED_UNROLL, "            ", true)}
          }
        }
      }
    }
`;
}

/** Threads per workgroup of the merge-states kernel. */
export const MERGE_WG = 128;

/** Configuration of one merge-states dispatch. */
export interface MergeConfig {
  /** Storage type of each input out (one per state in this dispatch). */
  ins: Elem[];
  /** Whether an f32 accumulator `(m, l, o)` from an earlier dispatch is read. */
  hasAcc: boolean;
  /** Whether this dispatch writes the final out/lse (else an accumulator). */
  final: boolean;
  /** Output storage type (final only). */
  out: Elem;
}

/** Pipeline cache key of a merge dispatch. */
export function mergeKey(c: MergeConfig): string {
  return `merge:${c.ins.join(",")}:acc${c.hasAcc}:final${c.final}:${c.out}`;
}

/**
 * WGSL of one merge-states dispatch: folds the accumulator (if any) and the listed states in
 * order. Bindings: meta (rows, D, nx, −∞ bits), [acc in], (out_i, lse_i)…, then out + lse
 * (final) or acc out. An accumulator holds `m, l` per row then `o` per row, as f32.
 */
export function mergeWgsl(c: MergeConfig): string {
  const f16 = c.ins.includes("f16") || (c.final && c.out === "f16");
  const decl: string[] = [`@group(0) @binding(0) var<storage, read> mt: array<u32>;`];
  let bind = 1;
  if (c.hasAcc) decl.push(`@group(0) @binding(${bind++}) var<storage, read> ACCI: array<f32>;`);
  c.ins.forEach((t, i) => {
    decl.push(`@group(0) @binding(${bind++}) var<storage, read> O${i}: array<${t}>;`);
    decl.push(`@group(0) @binding(${bind++}) var<storage, read> L${i}: array<f32>;`);
  });
  if (c.final) {
    decl.push(`@group(0) @binding(${bind++}) var<storage, read_write> OUT: array<${c.out}>;`);
    decl.push(`@group(0) @binding(${bind++}) var<storage, read_write> LSE: array<f32>;`);
  } else {
    decl.push(`@group(0) @binding(${bind++}) var<storage, read_write> ACCO: array<f32>;`);
  }
  const fold = (mB: string, lB: string, oB: string) => `
  {
    let mB = ${mB};
    let mN = max(m, mB);
    if (mN != ninf) {
      let al = select(0.0, exp(m - mN), m != ninf);
      let be = select(0.0, exp(mB - mN), mB != ninf);
      l = al * l + be * ${lB};
      o = al * o + be * ${oB};
      m = mN;
    }
  }`;
  return `${f16 ? "enable f16;" : ""}
// merge states: ${mergeKey(c)}
${decl.join("\n")}
${NONFINITE}
@compute @workgroup_size(${MERGE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let rows = mt[0];
  let D = mt[1];
  let x = (wid.x + wid.y * mt[2]) * ${MERGE_WG}u + tid;
  let ninf = bitcast<f32>(mt[3]);
  let qnan = bitcast<f32>(mt[3] | 0x7fc00000u);
  // D = 0 (outs of shape [..., 0]): one thread a row still merges the lse.
  let hasD = D > 0u;
  let Dd = max(D, 1u);
  if (x >= rows * Dd) { return; }
  let row = x / Dd;
  let d = x % Dd;
  // A NaN or +∞ lse makes its row NaN (as IEEE arithmetic does on the CPU).
  var bad = false;
  var m = ninf;
  var l = 0.0;
  var o = 0.0;
  ${
    c.hasAcc
      ? `bad = is_nan(ACCI[row * 2u + 1u]);
  ${fold("ACCI[row * 2u]", "ACCI[row * 2u + 1u]", "select(0.0, ACCI[rows * 2u + x], hasD)")}`
      : ""
  }
  ${
    c.ins.map((_, i) =>
      `bad = bad || poison_score(L${i}[row]);
  ${fold(`L${i}[row]`, "1.0", `select(0.0, f32(O${i}[x]), hasD)`)}`
    ).join("\n")
  }
  ${
    c.final
      ? `if (hasD) { OUT[x] = ${c.out}(select(select(0.0, o / l, l != 0.0), qnan, bad)); }
  if (d == 0u) { LSE[row] = select(select(ninf, m + log(l), l != 0.0), qnan, bad); }`
      : `if (hasD) { ACCO[rows * 2u + x] = o; }
  if (d == 0u) { ACCO[row * 2u] = m; ACCO[row * 2u + 1u] = select(l, qnan, bad); }`
  }
}
`;
}

/** Configuration of the workgroup-memory decode kernel (no subgroups needed). */
export interface WgmConfig {
  /** Head dim (16, 32, 64, 128 or 256). */
  D: number;
  /** Rows per unit (GQA group × rows per query block), compile-time. */
  R: number;
  /** K/V storage. */
  kv: Elem;
  /** Q and out storage. */
  q: Elem;
  /** Keys per tile (a power of two dividing 256). */
  KT: number;
  /** Key groups merged per round at the end of a segment. */
  grMax: number;
}

/** Threads per workgroup of the workgroup-memory decode kernel. */
export const WGM_WG = 256;

/** Pipeline cache key of a workgroup-memory decode kernel. */
export function wgmKey(c: WgmConfig): string {
  return `attn-wgm:D${c.D}:R${c.R}:kv${c.kv}:q${c.q}:KT${c.KT}:gr${c.grMax}`;
}

/** Whether the workgroup-memory decode kernel supports a shape, and with which tile. */
export function wgmTile(D: number, R: number): number | null {
  if (![16, 32, 64, 128, 256].includes(D) || R * D > 512) return null;
  const KT = R <= 2 ? 64 : R <= 4 ? 32 : 16;
  const NSL = WGM_WG / KT; // dim slices in the QK phase
  const G = (WGM_WG * 4) / D; // key groups in the PV phase
  if (D % (4 * NSL) !== 0 || KT % G !== 0) return null;
  return KT;
}

/**
 * WGSL of the workgroup-memory decode kernel, the path for devices without subgroups. A tile
 * of `KT` keys is processed in two phases with one barrier between them:
 *
 * - QK: thread (key j, slice s) loads `D / NSL` dims of key j and writes the partial dot of
 *   every row (q sits in workgroup memory; all threads of a warp read the same q words);
 * - PV: thread (group g, dims 4·d4…) sums the slices of its group's `KT / G` keys, keeps an
 *   online softmax per key group (identical in every thread of the group, so no barrier) and
 *   accumulates its four dims of V.
 *
 * Partial dots are double-buffered, so the next tile's QK does not wait for this tile's PV.
 * At the end of a segment the G group states are merged in workgroup memory in fixed order.
 */
export function wgmWgsl(c: WgmConfig): string {
  const { D, R, KT, grMax } = c;
  const WG = WGM_WG;
  const NSL = WG / KT;
  const SL = D / NSL; // dims per slice
  const D4 = D / 4;
  const G = WG / D4; // key groups
  const KPG = KT / G; // keys per group per tile
  const rows = [...Array(R).keys()];
  const ldT = c.kv === "f32" ? "vec4<f32>" : "vec2<u32>";
  const ld4 = (x: string) =>
    c.kv === "f32" ? x : `vec4<f32>(unpack2x16float(${x}.x), unpack2x16float(${x}.y))`;
  const lines: string[] = [];
  const p = (s: string) => lines.push(s);
  for (const r of rows) {
    p(`    let i${r} = qb * rpb + ${r}u % rpb;`);
    p(`    let e${r} = select(0u, min(k1, visible(len, Sq, i${r}, causal)), i${r} < Sq);`);
  }
  p(`    let kend = max(${rows.map((r) => `e${r}`).join(", max(")}, 0u${")".repeat(R)};`);
  p(`    let emin = min(${rows.map((r) => `select(kend, e${r}, i${r} < Sq)`).join(", min(")}, kend${
    ")".repeat(R)
  };`);
  p(`    workgroupBarrier();`);
  p(`    if (tid < ${R * D4}u) {`);
  p(`      let qr = tid / ${D4}u;`);
  p(`      let qi = qb * rpb + qr % rpb;`);
  p(`      let qrow = select(0u, (b * Hq + h * group + qr / rpb) * Sq + qi, qi < Sq);`);
  p(`      let qo = qrow * ${D}u + (tid % ${D4}u) * 4u;`);
  p(
    `      qs[tid] = scale * vec4<f32>(f32(Q[qo]), f32(Q[qo + 1u]), f32(Q[qo + 2u]), f32(Q[qo + 3u]));`,
  );
  p(`    }`);
  p(`    workgroupBarrier();`);
  for (const r of rows) {
    p(`    var m${r} = ninf;`);
    p(`    var l${r} = 0.0;`);
    p(`    var o${r} = vec4<f32>(0.0);`);
  }
  p(`    var bad = 0u;`);
  p(`    var buf = 0u;`);
  p(`    for (var t0 = k0; t0 < kend; t0 += ${KT}u) {`);
  // Loads first: this thread's K slice and its group's V vectors.
  p(`      let kq = (kvRow0 + min(t0 + qj, kend - 1u)) * ${D4}u + qsl * ${SL / 4}u;`);
  for (let x = 0; x < SL / 4; x++) p(`      let ka${x} = ${ld4(`K[kq + ${x}u]`)};`);
  for (let jj = 0; jj < KPG; jj++) {
    p(`      let vk${jj} = t0 + g * ${KPG}u + ${jj}u;`);
    p(`      let va${jj} = ${ld4(`V[(kvRow0 + min(vk${jj}, kend - 1u)) * ${D4}u + d4]`)};`);
  }
  for (const r of rows) {
    const terms = [...Array(SL / 4).keys()].map((x) =>
      `dot(qs[${r * D4}u + qsl * ${SL / 4}u + ${x}u], ka${x})`
    );
    p(`      pd[buf + ${r * KT}u * ${NSL}u + qsl * ${KT}u + qj] = ${terms.join(" + ")};`);
  }
  p(`      workgroupBarrier();`);
  for (const r of rows) {
    for (let jj = 0; jj < KPG; jj++) {
      const terms = [...Array(NSL).keys()].map((sl) =>
        `pd[buf + ${r * KT * NSL + sl * KT}u + g * ${KPG}u + ${jj}u]`
      );
      p(`      let s${r}_${jj} = select(ninf, ${terms.join(" + ")}, vk${jj} < e${r});`);
      p(`      bad |= select(0u, ${1 << r}u, poison_score(s${r}_${jj}));`);
    }
    const cm = [...Array(KPG).keys()].map((jj) => `s${r}_${jj}`).reduce((a, x) =>
      `max(${a}, ${x})`
    );
    p(`      let mn${r} = max(m${r}, ${cm});`);
    p(`      let al${r} = select(0.0, exp(m${r} - mn${r}), m${r} != ninf);`);
    const ps = [...Array(KPG).keys()].map((jj) => {
      p(`      let p${r}_${jj} = select(0.0, exp(s${r}_${jj} - mn${r}), s${r}_${jj} != ninf);`);
      return jj;
    });
    p(`      l${r} = l${r} * al${r} + ${ps.map((jj) => `p${r}_${jj}`).join(" + ")};`);
    // Hidden keys (p = 0) are selected away where a tile holds any (0 · ∞ = NaN).
    const masked = ps.map((jj) => `select(vec4<f32>(0.0), p${r}_${jj} * va${jj}, vk${jj} < e${r})`);
    p(`      if (t0 + ${KT}u > emin) {`);
    p(`        o${r} = o${r} * al${r} + ${masked.join(" + ")};`);
    p(`      } else {`);
    p(`        o${r} = o${r} * al${r} + ${ps.map((jj) => `p${r}_${jj} * va${jj}`).join(" + ")};`);
    p(`      }`);
    p(`      m${r} = mn${r};`);
  }
  p(`      buf = ${R * KT * NSL}u - buf;`);
  p(`    }`);
  // Merge the key groups (fixed order).
  p(`    if (d4 == 0u) {`);
  // Every thread of a group holds the same scores, so its flags are the group's.
  for (const r of rows) {
    p(`      gml[g * ${R}u + ${r}u] = vec2<f32>(m${r}, select(l${r}, qnan, (bad & ${
      1 << r
    }u) != 0u));`);
  }
  p(`    }`);
  p(`    workgroupBarrier();`);
  mergeSlots({
    ml: "gml",
    count: `${G}u`,
    rows: R,
    row: "fr",
    rounds: `${Math.ceil(G / grMax)}u`,
    perRound: grMax,
    writer: `g / ${grMax}u == rd`,
    slot: `g % ${grMax}u`,
    stores: rows.map((r) => `wo[(sl * ${R}u + ${r}u) * ${D4}u + d4] = o${r};`),
    d4: D4,
  }).forEach(p);
  return `${c.q === "f16" ? "enable f16;" : ""}
// attention, workgroup-memory decode kernel: ${wgmKey(c)}
${mainBindings(c.q, ldT)}
var<workgroup> qs: array<vec4<f32>, ${R * D4}>;
var<workgroup> pd: array<f32, ${2 * R * KT * NSL}>;
var<workgroup> gml: array<vec2<f32>, ${G * R}>;
var<workgroup> wo: array<vec4<f32>, ${grMax * R * D4}>;
${VISIBLE}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= mt[${META.numWorkers}]) { return; }
  ${sizes()}
  let qj = tid % ${KT}u;
  let qsl = tid / ${KT}u;
  let g = tid / ${D4}u;
  let d4 = tid % ${D4}u;
  let act = tid < ${R * D4}u;
  let fr = min(tid / ${D4}u, ${R - 1}u);
  let fj = tid % ${D4}u;
${segmentLoop()}
${lines.join("\n")}
${writeOut(D, c.q)}
  }
}
`;
}
