/**
 * The two deterministic merges of attention states the kernels share: the slots of one
 * workgroup (subgroups or key groups) through workgroup memory, and the partial states of a
 * cut unit in the listed order (the reduce kernel and the subgroup kernel's in-kernel merge
 * run the same fold, so they give the same bits).
 *
 * @module
 */
import { type Elem, segmentFields } from "./_wgsl_meta.ts";
import { partLoad } from "./_wgsl_segments.ts";
import { sinkFold } from "./_wgsl_variant.ts";

/**
 * WGSL lines merging the partial states of a workgroup's slots (subgroups or key groups) in
 * slot order, deterministic: each slot's `(m, l)` per row is in `ml` already (after a
 * barrier); the common max `M`, the total `Lt` and NaN flag `rbad` of the thread's row
 * `row`, then the outputs in `rounds` rounds of `perRound` slots through `wo` (the slots
 * for which `writer` holds run `stores`, with `sl` their place in the round), summed into
 * `acc` with weights exp(m − M). Threads with `act` own one (row, vec4 of dims `fj`).
 */
export function mergeSlots(a: MergeSlots): string[] {
  const { rounds, writes, state, oneRound } = mergeParts(a);
  if (!a.mlPending) return [...state, ...rounds("    ")];
  return [
    ...state,
    `    if (${a.rounds} == 1u) {`,
    `      let rd = 0u;`,
    ...writes("      "),
    `      workgroupBarrier();`,
    ...oneRound("      ", true),
    ...(a.noTrailing ? [] : [`      workgroupBarrier();`]),
    `    } else {`,
    ...rounds("      "),
    `    }`,
  ];
}

/**
 * {@link mergeSlots} in one round (every subgroup in `wo` at once; the caller makes sure of
 * it) cut at its barrier: `writes` (the slots' outputs into `wo`; `ml` the caller writes),
 * then, after the caller's barrier, `reads` (the state, the totals and the fold). The same
 * lines as the one-round merge, so the same bits; piece runs merge two pieces a barrier with
 * it (`_wgsl_piece_runs.ts`).
 */
export function oneRoundMerge(a: MergeSlots): { writes: string[]; reads: string[] } {
  const { writes, state, oneRound } = mergeParts(a);
  return {
    writes: [`    {`, `      let rd = 0u;`, ...writes("      "), `    }`],
    reads: [...state, `    {`, ...oneRound("    ", false), `    }`],
  };
}

/** What {@link mergeSlots} merges, where and how. */
export interface MergeSlots {
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
  /**
   * The caller has written `ml` but not yet waited for it (no barrier since): a merge in one
   * round (`rounds` = 1, uniform) then writes its slots' outputs before the one barrier that
   * publishes both, instead of a barrier for `ml` and another for the outputs. The same
   * arithmetic in the same order: the same bits.
   */
  mlPending?: boolean;
  /**
   * With `mlPending`: leave out the barrier after the one-round merge's reads. Only where the
   * next writes of `ml` and `wo` go elsewhere (the caller alternates two copies, `mlBase` and
   * `woBase`), so no workgroup overwrites what another still reads.
   */
  noTrailing?: boolean;
  /** Index offsets of the copy of `ml` and of `wo` in use (WGSL expressions ending in " + "). */
  mlBase?: string;
  woBase?: string;
  /**
   * Unroll the slot loops where every slot holds a state (default true; see `mergeParts`).
   * False: the loops in every path (other bits on an H100; the kernels of int8 K/V, which the
   * unrolled form made up to 19 % slower there).
   */
  unroll?: boolean;
}

/** The parts of {@link mergeSlots}: each a function of the indent. */
function mergeParts(a: MergeSlots) {
  const { ml, count, rows, row, perRound: K } = a;
  const mlOff = a.mlBase ?? "";
  const woOff = a.woBase ?? "";
  const totals = (ind: string) =>
    [
      `if (act) {`,
      `  for (var s = 0u; s < ${count}; s++) { M = max(M, ${ml}[${mlOff}s * ${rows}u + ${row}].x); }`,
      `  for (var s = 0u; s < ${count}; s++) {`,
      `    let ml = ${ml}[${mlOff}s * ${rows}u + ${row}];`,
      `    rbad = rbad || is_nan(ml.y);`,
      `    Lt += select(0.0, exp(ml.x - M), ml.x != ninf) * ml.y;`,
      `  }`,
      `}`,
    ].map((x) => ind + x);
  const writes = (ind: string) =>
    [`if (${a.writer}) {`, `  let sl = ${a.slot};`, ...a.stores.map((x) => `  ${x}`), `}`]
      .map((x) => ind + x);
  const fold = (ind: string) =>
    [
      `if (act) {`,
      `  let cnt = min(${K}u, ${count} - rd * ${K}u);`,
      `  for (var s = 0u; s < cnt; s++) {`,
      `    let mS = ${ml}[${mlOff}(rd * ${K}u + s) * ${rows}u + ${row}].x;`,
      `    let wgt = select(0.0, exp(mS - M), mS != ninf);`,
      `    acc += wgt * wo[${woOff}(s * ${rows}u + ${row}) * ${a.d4}u + fj];`,
      `  }`,
      `}`,
    ].map((x) => ind + x);
  // Where every one of the `perRound` slots holds a state (`count` = `perRound`, uniform; one
  // round), the totals and the fold with the slot loop unrolled: each slot's `(m, l)` and output
  // loaded before any arithmetic, its weight exp(m − M) computed once for both sums. The same
  // WGSL operations in the same order as the loops, yet on an H100 not the same bits (the
  // compiler's choice), so every path (one round or rounds, any `mb`) takes this form wherever
  // `count` = `perRound`. It runs on every thread (`row` and `fj` stay in bounds; only `act`
  // threads' results are used): under `if (act)` it diverged inside a subgroup where a row has
  // fewer vec4s than a subgroup has lanes (D = 32), and piece runs then gave NaN on an H100 (not
  // at D = 64 or 128; most likely the next piece's shuffles ran in a subgroup the branch had
  // split). Lean calls at 1k–4k took 0.8–1.5 µs less (bench/NOTES.md, session (18)).
  const ks = [...Array(K).keys()];
  const full = `${count} == ${K}u`;
  const unrolledTotals = (ind: string) =>
    [
      ...ks.map((s) => `let mlv${s} = ${ml}[${mlOff}${s * rows}u + ${row}];`),
      ...ks.map((s) => `M = max(M, mlv${s}.x);`),
      ...ks.flatMap((s) => [
        `rbad = rbad || is_nan(mlv${s}.y);`,
        `let w${s} = select(0.0, exp(mlv${s}.x - M), mlv${s}.x != ninf);`,
        `Lt += w${s} * mlv${s}.y;`,
      ]),
    ].map((x) => ind + x);
  const unrolledFold = (ind: string) =>
    [
      ...ks.map((s) => `let wov${s} = wo[${woOff}(${s * rows}u + ${row}) * ${a.d4}u + fj];`),
      ...ks.map((s) => `acc += w${s} * wov${s};`),
    ].map((x) => ind + x);
  // One round of the outputs (at `ind`, `rd` in scope): its slots' writes, then their fold.
  const round = (ind: string, sum: (ind: string) => string[]) => [
    ...writes(ind),
    `${ind}workgroupBarrier();`,
    ...sum(ind),
    `${ind}workgroupBarrier();`,
  ];
  // The merge in rounds by the loops (at `ind`).
  const loopedRounds = (ind: string) => [
    ...totals(ind),
    `${ind}for (var rd = 0u; rd < ${a.rounds}; rd++) {`,
    ...round(`${ind}  `, fold),
    `${ind}}`,
  ];
  const unroll = a.unroll ?? true;
  // The merge in rounds (at `ind`), after a barrier when `ml` is not yet published.
  const rounds = (ind: string) => [
    ...(a.mlPending ? [`${ind}workgroupBarrier();`] : []),
    ...(!unroll ? loopedRounds(ind) : [
      `${ind}if (${full}) {`,
      ...unrolledTotals(`${ind}  `),
      `${ind}  let rd = 0u;`,
      ...round(`${ind}  `, unrolledFold),
      `${ind}} else {`,
      ...loopedRounds(`${ind}  `),
      `${ind}}`,
    ]),
  ];
  // One round (every slot in `wo`, `count` ≤ `perRound`): the totals and the fold; `rd` in
  // scope where `rdSet`.
  const oneRound = (ind: string, rdSet: boolean) =>
    (!unroll ? [...(rdSet ? [] : [`let rd = 0u;`]), ...totals(""), ...fold("")] : [
      `if (${full}) {`,
      ...unrolledTotals("  "),
      ...unrolledFold("  "),
      `} else {`,
      `  let rd = 0u;`,
      ...totals("  "),
      ...fold("  "),
      `}`,
    ]).map((x) => ind + x);
  const state = [
    `    var M = ninf;`,
    `    var Lt = 0.0;`,
    `    var acc = vec4<f32>(0.0);`,
    `    var rbad = false;`,
  ];
  return { rounds, writes, state, oneRound };
}

/**
 * WGSL of the pairwise merge of a cut unit's pieces, left to right: the running state
 * `(m, l, o)` (variables named by `run`) takes in the state `(mb, lb, ob)` (expressions). The
 * one text both the merge of the listed pieces ({@link finishCut}) and the subgroup kernel's
 * piece runs (`_wgsl_piece_runs.ts`) fold with, so their bits agree; `o` and `ob` may be
 * scalars or vectors (componentwise, the same arithmetic).
 */
export function pairFold(
  run: { m: string; l: string; o: string },
  mb: string,
  lb: string,
  ob: string,
  ind: string,
): string[] {
  const { m, l, o } = run;
  return [
    `let mN = max(${m}, ${mb});`,
    `if (mN != ninf) {`,
    `  let al = select(0.0, exp(${m} - mN), ${m} != ninf);`,
    `  let be = select(0.0, exp(${mb} - mN), ${mb} != ninf);`,
    `  ${l} = al * ${l} + be * ${lb};`,
    `  ${o} = al * ${o} + be * ${ob};`,
    `  ${m} = mN;`,
    `}`,
  ].map((x) => ind + x);
}

/**
 * WGSL statements finishing one element of a cut unit: state element `d` of row `r` of the
 * unit folds the `count` partial slots listed at `mt[first …]` strictly in that order with
 * the pairwise merge, loading `U` partials before their fold (any `U` gives the same bits),
 * and writes output row `row` (normalised) and, for `d = 0`, its lse. Shared by the reduce
 * kernel and the subgroup kernel's in-kernel merge, so both give the same results.
 * `runs`: the slots are `first`, `first + 1`, … themselves (a piece run's publications), and
 * the first holds the left fold of the unit's leading pieces: it seeds the running state as
 * it is (folding it into an empty state would turn a −0 into +0).
 */
export function finishCut(
  D: number,
  q: Elem,
  U: number,
  ind: string,
  atomicPart = false,
  sinks = false,
  runs = false,
): string {
  const ld = (i: string) => partLoad(i, atomicPart);
  const ks = [...Array(U).keys()];
  const fold = (j: number) =>
    "\n" + pairFold({ m: "m", l: "l", o: "o" }, `mb${j}`, `lb${j}`, `ob${j}`, "    ").join("\n");
  const slot = (k: string) => runs ? `(first + ${k})` : `mt[first + ${k}]`;
  const seed = runs
    ? `let p = first * R + r;
var m = ${ld("p * 2u")};
var l = ${ld("p * 2u + 1u")};
var o = ${ld(`partOOff + p * ${D}u + d`)};
var k = 1u;
var bad = is_nan(l);`
    : `var m = ninf;
var l = 0.0;
var o = 0.0;
var k = 0u;
var bad = false;`;
  const body = `${seed}
while (k < count) {
  let last = count - 1u;
${ks.map((j) => `  let p${j} = ${slot(`min(k + ${j}u, last)`)} * R + r;`).join("\n")}
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
}${
    // The sink state (z, 1, 0) of the row's head, merged once, after every piece.
    sinks
      ? `
${sinkFold("(row / Sq) % Hq", "m", "l", "").join("\n")}
o = o * az;
l = lz;
m = mz;`
      : ""}
O[row * ${D}u + d] = ${q}(select(select(0.0, o / l, l != 0.0), qnan, bad));
if (d == 0u) { LSE[row] = select(select(ninf, m + log(l * pun), l != 0.0), qnan, bad); }`;
  return body.split("\n").map((x) => ind + x).join("\n");
}

/** Partials whose loads the subgroup kernel's in-kernel merge issues together. */
const FUSED_UNROLL = 8;

/**
 * The subgroup kernel's in-kernel merge (`SgConfig.fm`), after a segment that wrote
 * partial slot `part` of unit (`b`, `h`, `qb`): publish the slot (a device-scope release —
 * wgpu's `storageBarrier` is `OpControlBarrier` with Device memory scope and acquire-release
 * semantics on storage memory), count it on the unit's counter, and if this workgroup is the
 * last of the unit's pieces, acquire (a second barrier) and finish the unit as the reduce
 * kernel would. `runs` (a piece run, `_wgsl_piece_runs.ts`): the run adds `add` publications
 * to the count (a WGSL expression), and the unit's slots are `first`, `first + 1`, … with the
 * leading pieces' fold first (`finishCut`'s `runs`).
 */
export function fusedMerge(
  D: number,
  q: Elem,
  wg: number,
  sinks = false,
  fence = true,
  runs: { add: string } | null = null,
): string {
  const add = runs?.add ?? "1u";
  return `    if (part != 0xffffffffu) {${fence ? "\n      storageBarrier();" : ""}
      let itm = mt[sb + 5u];
      let first = mt[sb + 6u];
      let count = mt[sb + 7u];
      let npub = ${add};
      if (tid == 0u) { wlast = select(0u, 1u, atomicAdd(&CNT[itm], npub) + npub == count); }
      if (workgroupUniformLoad(&wlast) != 0u) {
        storageBarrier();
        for (var x = tid; x < R * ${D}u; x += ${wg}u) {
          let r = x / ${D}u;
          let d = x % ${D}u;
          let i = qb * rpb + r % rpb;
          if (i < Sq) {
            let row = (b * Hq + h * group + r / rpb) * Sq + i;
${finishCut(D, q, FUSED_UNROLL, "            ", true, sinks, runs !== null)}
          }
        }
      }
    }
`;
}

/**
 * The in-kernel merge deferred to the end of a worker (`SgConfig.dm`): after its last
 * segment the workgroup publishes all the partial states it wrote with one device-scope
 * barrier, then counts each cut segment on its unit's counter in order and finishes the units
 * it completes — one fence a worker instead of one a cut segment (a batch-invariant worker
 * streams many short pieces). The same fold in the same order: the same bits.
 */
export function deferredMerge(D: number, q: Elem, wg: number, sinks = false): string {
  return `  storageBarrier();
  for (var si = segA; si < segB; si++) {
${segmentFields()}
${fusedMerge(D, q, wg, sinks, false)}  }
`;
}
