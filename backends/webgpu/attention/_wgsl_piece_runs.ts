/**
 * WGSL of the subgroup kernel's piece runs (`SgConfig.pr`, batch-invariant launches; the runs
 * and their publication slots: `_fold_runs.ts`). The canonical order is the piece-by-piece
 * one (each piece's state from an empty state, its subgroups merged in order, the pieces
 * folded left to right by {@link pairFold}); only where it is computed changes. A worker's
 * consecutive pieces of a unit are one segment: the keys stream on across a piece's end (the
 * next batch's loads stay in flight) while the piece's subgroups merge through workgroup
 * memory as at any segment's end. The run that starts the unit folds each piece's merged
 * state into a running one (a row element a thread: `um`, `ul`, `uo`, `ubad`); a later run
 * publishes each piece's state. A unit in one run writes its output from the fold; a cut
 * unit's first run publishes its fold, every run counts its publications, and the workgroup
 * that completes the count merges them in slot order from the fold on (`finishCut`'s `runs`).
 * So the bits are those of one segment a piece, without a segment's end (its fence, count and
 * drained loads) at every piece (bench/NOTES.md, session (13)).
 *
 * @module
 */
import type { Elem } from "./_wgsl_meta.ts";
import { fusedMerge, pairFold } from "./_wgsl_merge.ts";
import { stateStores } from "./_wgsl_segments.ts";
import { sinkFold } from "./_wgsl_variant.ts";

/** The run's piece keys and start flag, its next publication slot and the thread's fold. */
export function runDecls(ind: string): string[] {
  return [
    `let pw = mt[sb + 8u];`,
    `let pk = pw & 0x7fffffffu;`,
    `let host = (pw >> 31u) != 0u;`,
    `var pslot = part;`,
    // A unit of one piece ends as that segment would have (`writeOut`: other rounding than
    // the merge of pieces, and no fold: a fold from an empty state turns a −0 into +0).
    `let one = part == 0xffffffffu && k1 - k0 <= pk;`,
    `var um = ninf;`,
    `var ul = 0.0;`,
    `var uo = vec4<f32>(0.0);`,
    `var ubad = false;`,
  ].map((x) => ind + x);
}

/** The loop over the run's pieces (the caller closes it): `[pkb, pke)` the piece's keys. */
export function pieceLoop(ind: string): string[] {
  // Up to the run's end `k1`, not `kend`: a run publishes every one of its pieces, empty ones
  // (keys no row sees) as empty states, as one segment a piece would.
  return [
    `${ind}for (var pkb = k0; pkb < k1; pkb += pk) {`,
    `${ind}let pke = min(pkb + pk, kend);`,
  ];
}

/** Publishes the thread's row element of state `(m, l, o)` (l NaN where `bad`) in slot `slot`. */
function publish(D: number, slot: string, m: string, l: string, o: string, bad: string) {
  return [
    `if (act && qb * rpb + fr % rpb < Sq) {`,
    ...stateStores(D, slot, m, l, o, bad, true).map((x) => `  ${x}`),
    `}`,
  ];
}

/**
 * After a piece's subgroup merge (`M`, `Lt`, `acc`, `rbad` of the thread's row element): a
 * unit of this one piece is written (`segmentOut`, the kernel's end of a segment), else the
 * run that starts the unit folds it and a later run publishes it.
 */
export function pieceEnd(D: number, segmentOut: string, ind: string): string[] {
  return [
    `if (one) {`,
    ...segmentOut.split("\n").filter((x) => x.trim()).map((x) => `  ${x.slice(4)}`),
    `} else if (host) {`,
    `  let lb = select(Lt, qnan, rbad);`,
    `  ubad = ubad || is_nan(lb);`,
    ...pairFold({ m: "um", l: "ul", o: "uo" }, "M", "lb", "acc", "  "),
    `} else {`,
    ...publish(D, "pslot", "M", "Lt", "acc", "rbad").map((x) => `  ${x}`),
    `  pslot += 1u;`,
    `}`,
  ].map((x) => ind + x);
}

/**
 * After the run's last piece, inside the pass over the rows: a unit of several pieces in one
 * run writes its rows from the fold (normalised as `finishCut` writes them); a cut unit's
 * first run publishes its fold.
 */
export function runOutput(D: number, q: Elem, sinks: boolean, ind: string): string[] {
  // With sinks the head's sink state joins once, after every piece (as `finishCut`).
  const norm = sinks
    ? [
      ...sinkFold("(row / Sq) % Hq", "um", "ul", ""),
      `let yo = uo * az;`,
      `let yl = lz;`,
      `let ym = mz;`,
    ]
    : [`let yo = uo;`, `let yl = ul;`, `let ym = um;`];
  return [
    `if (part == 0xffffffffu) {`,
    `  if (!one && act && qb * rpb + fr % rpb < Sq) {`,
    `    let row = (b * Hq + h * group + fr / rpb) * Sq + qb * rpb + fr % rpb;`,
    ...norm.map((x) => `    ${x}`),
    `    let ob = row * ${D}u + fj * 4u;`,
    ...["x", "y", "z", "w"].map((c, i) =>
      `    O[ob + ${i}u] = ${q}(select(select(0.0, yo.${c} / yl, yl != 0.0), qnan, ubad));`
    ),
    `    if (fj == 0u) {`,
    `      LSE[row] = select(select(ninf, ym + log(yl * pun), yl != 0.0), qnan, ubad);`,
    `    }`,
    `  }`,
    `} else if (host) {`,
    ...publish(D, "part", "um", "ul", "uo", "ubad").map((x) => `  ${x}`),
    `}`,
  ].map((x) => ind + x);
}

/**
 * After the pass: a cut unit's run counts its publications (one for the first run, one a
 * piece for a later run) and the workgroup that completes the count merges the unit.
 */
export function runMerge(D: number, q: Elem, wg: number, sinks: boolean): string {
  return fusedMerge(D, q, wg, sinks, true, {
    add: "select((k1 - k0 + pk - 1u) / pk, 1u, host)",
  });
}
