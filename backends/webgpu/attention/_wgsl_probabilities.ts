/**
 * WGSL of the subgroup kernel's step from a batch's partial dot products to probabilities:
 * the reduction of the `U · R` partial dot products a lane holds over the `L` lanes of a key
 * (a butterfly, or per-value shuffles), the masks (past a row's end, variants), the NaN/+∞
 * poison bits, the running max of each row and the rescale factor of the old state, and the
 * probabilities `p${u}_${r}` every lane of a slot then holds (for its P·V update).
 *
 * With the butterfly a lane ends holding whole scores of `cf` (key, row) pairs, the same ones
 * every batch ({@link heldLanes}): it keeps the softmax denominator of those pairs only
 * (`lh${j}`, summed over the subgroup at the segment's end, {@link heldDenominators}) and,
 * for quantized K/V, applies its held key's scales (`hks${h}`, `hvs${h}`) once to the score
 * and once to the probability before the broadcast, instead of every lane applying every
 * key's scales to every row.
 *
 * Names it reads from the key loop: `s${u}_${r}` (lane-partial dot products), `base`, `slot`,
 * `lane`, `sgi`, `key${u}`, `e${r}`, `m${r}`, `l${r}` (without the butterfly), `ninf`, `psc`,
 * `bad`, and the lines of {@link heldLanes}; it declares `mn${r}`, `al${r}`, `p${u}_${r}`.
 * With the vote before the max (`lz`) the old state is rescaled only in the batches that
 * raise a max (`rescale`: the kernel's lines for row r), so the P·V update adds without
 * multiplying by `al${r}` ({@link rescaledInLoop}).
 *
 * @module
 */
import { type KernelVariant, variantScore, variantVisible } from "./_wgsl_variant.ts";

/** The butterfly's shape: what a lane holds after it. */
export interface Held {
  /** Whole scores a lane holds (`U · R / L`, at least 1). */
  cf: number;
  /** Lanes holding copies of each score (`L / (U · R)` where that is > 1, else 1). */
  dup: number;
  /** Keys a lane's scores belong to (`cf / R`, at least 1). */
  nh: number;
  /** The halving steps: xor offset and the half a lane keeps the upper part of. */
  halves: { step: number; off: number; half: number }[];
}

/** The butterfly's shape for `U · R` values over `L` lanes (`U · R` a power of two). */
export function held(R: number, U: number, L: number): Held {
  const NV = U * R;
  const halves: Held["halves"] = [];
  let n = NV, step = 0;
  for (let off = L / 2; off >= 1 && n > 1; off /= 2, step++) {
    halves.push({ step, off, half: n / 2 });
    n /= 2;
  }
  const cf = Math.max(1, NV / L);
  return { cf, dup: Math.max(1, L / NV), nh: Math.max(1, cf / R), halves };
}

/** WGSL of a lane's first held value index from the `up${s}` flags of the halving steps. */
function firstHeld(h: Held): string {
  return h.halves.map((x) => `select(0u, ${x.half}u, up${x.step})`).join(" + ") || "0u";
}

/**
 * Lane-constant lines (segment indentation) of the butterfly: which half a lane keeps at each
 * step (`up${s}`), its first held value (`vb`), held value j's index `vi${j}` and row `vr${j}`,
 * and held key h's slot offset `hu${h}` (value j belongs to key `hu${floor(j / R)}`).
 */
export function heldLanes(R: number, U: number, L: number): string[] {
  const h = held(R, U, L);
  const lines = h.halves.map((x) => `    let up${x.step} = (lane & ${x.off}u) != 0u;`);
  lines.push(`    let vb = ${firstHeld(h)};`);
  for (let j = 0; j < h.cf; j++) {
    lines.push(`    let vi${j} = vb + ${j}u;`, `    let vr${j} = vi${j} % ${R}u;`);
  }
  for (let k = 0; k < h.nh; k++) lines.push(`    let hu${k} = vi${k * R} / ${R}u;`);
  return lines;
}

/**
 * Lines (segment indentation, after the key loop) turning the held denominators into each
 * row's `l${r}`, summed over every lane of the subgroup (its slots included; xor steps, so
 * every lane gets the same bits). Copies of a value (`dup` > 1) count once.
 */
export function heldDenominators(R: number, U: number, L: number): string[] {
  const h = held(R, U, L);
  const lines: string[] = [];
  for (let r = 0; r < R; r++) {
    const sum = [...Array(h.cf).keys()].map((j) => `select(0.0, lh${j}, vr${j} == ${r}u)`)
      .join(" + ");
    lines.push(`    l${r} = ${h.dup > 1 ? `select(0.0, ${sum}, lane % ${h.dup}u == 0u)` : sum};`);
  }
  lines.push(`    for (var off = 1u; off < sgs; off <<= 1u) {`);
  for (let r = 0; r < R; r++) lines.push(`      l${r} += subgroupShuffleXor(l${r}, off);`);
  lines.push(`    }`);
  return lines;
}

/**
 * Whether a kernel runs in held mode: the butterfly and the vote before the max over
 * quantized K/V with head scales (the vote is on there by default, one-row units included).
 * Measured on an H100 (bench/NOTES.md, session 2026-12-06 (5)): float8e4m3 grouped-query
 * decode 5–9 % faster, multi-head 1–2 %; for float16 K/V held mode was −2…+3 % and for int8
 * with token scales 10–12 % slower, so those keep every lane's denominator and rescale every
 * batch.
 */
export function heldMode(bf: boolean, lz: boolean, headScales: boolean): boolean {
  return bf && lz && headScales;
}

/** Lines (at the key loop's indentation) from dot products to probabilities. */
export function probabilityLines(a: {
  /** Rows of the pass. */
  R: number;
  /** Keys a slot a batch. */
  U: number;
  /** Lanes a key. */
  L: number;
  /** Key slots of a row group. */
  S: number;
  /** Butterfly reduction (`U · R` a power of two). */
  bf: boolean;
  /** Vote before the running max. */
  lz: boolean;
  /** Variant features (masks, soft-cap, ALiBi, bias), or null. */
  v: KernelVariant | null;
  /**
   * {@link heldMode}: held denominators, the rescale on a new max only, and the head scales
   * `hks${h}`, `hvs${h}` applied to the held scores and probabilities.
   */
  held: boolean;
  /** In {@link heldMode}: the kernel's lines rescaling row r's output by `al${r}`. */
  rescale: (r: number) => string[];
}): string[] {
  const { R, U, L, S, v } = a;
  const rows = [...Array(R).keys()];
  const us = [...Array(U).keys()];
  const lines: string[] = [];
  const p = (s: string) => lines.push(s);
  const hm = a.held;
  // The new running max of each row from the lane's candidate (its scores' max) and the
  // rescale factor of the old state. With `lz`, one vote first: the shuffle chains of
  // `subgroupMax` run only when some lane's candidate exceeds a running max; in held mode
  // the old state is rescaled there too (else al = 1 exactly: the same bits, no multiplies).
  const newMax = (cms: string[], rescaleHeld: string[]) => {
    cms.forEach((cm, r) => p(`      let cm${r} = ${cm};`));
    const al = (r: number, ind: string) =>
      p(`${ind}let al${r} = select(0.0, exp(m${r} - mn${r}), m${r} != ninf);`);
    if (a.lz) {
      for (const r of rows) p(`      var mn${r} = m${r};`);
      p(`      if (subgroupAny(${rows.map((r) => `cm${r} > m${r}`).join(" || ")})) {`);
      for (const r of rows) {
        p(`        mn${r} = max(m${r}, subgroupMax(cm${r}));`);
        if (hm) {
          al(r, "        ");
          a.rescale(r).forEach((x) => p(`  ${x}`));
        }
      }
      rescaleHeld.forEach((x) => p(`  ${x}`));
      p(`      }`);
    } else {
      for (const r of rows) p(`      let mn${r} = max(m${r}, subgroupMax(cm${r}));`);
    }
    if (!hm) { for (const r of rows) al(r, "      "); }
  };
  if (a.bf) {
    // Butterfly: the U·R partial dot products of a slot are reduced together, each xor step
    // halving the values a lane carries, so a lane ends with whole scores for NV/L of them
    // (or one, shared by L/NV lanes) — NV − 1 shuffles instead of NV·log2 L, and one exp per
    // value instead of one per lane. In held mode the lane-constant parts are `heldLanes`.
    const h = held(R, U, L);
    let cur = us.flatMap((u) => rows.map((r) => `s${u}_${r}`));
    for (let off = L / 2, step = 0; off >= 1; off /= 2, step++) {
      if (cur.length === 1) {
        p(`      ${cur[0]} += subgroupShuffleXor(${cur[0]}, ${off}u);`);
        continue;
      }
      const half = cur.length / 2;
      if (!hm) p(`      let up${step} = (lane & ${off}u) != 0u;`);
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
      cur = next;
    }
    const key = (j: number) => Math.floor(j / R);
    const quant = hm;
    if (!hm) {
      p(`      let vb = ${firstHeld(h)};`);
    }
    // The row-r value of a list by the lane's row of held value j.
    const byRow = (n: string, j: number) =>
      rows.slice(1).reduce((acc, r) => `select(${acc}, ${n}${r}, vr${j} == ${r}u)`, `${n}0`);
    cur.forEach((x0, j) => {
      // Quantized (head scales): K's scale on the whole score of the lane's held key.
      const x = quant ? `hks${key(j)} * ${x0}` : x0;
      if (hm) p(`      let vk${j} = base + hu${key(j)} * ${S}u + slot;`);
      else {
        p(`      let vi${j} = vb + ${j}u;`);
        p(`      let vr${j} = vi${j} % ${R}u;`);
        p(`      let vk${j} = base + (vi${j} / ${R}u) * ${S}u + slot;`);
      }
      if (v) {
        const row = (n: string) => byRow(n, j);
        const sc = variantScore(v, x, `vk${j}`, row);
        p(`      let sv${j} = select(ninf, ${sc}, ${variantVisible(v, `vk${j}`, row)});`);
      } else {
        p(`      let sv${j} = select(ninf, ${x}, vk${j} < ${byRow("e", j)});`);
      }
      p(`      bad |= select(0u, 1u << vr${j}, poison_score(sv${j}));`);
    });
    newMax(
      rows.map((r) => {
        const cand = cur.map((_, j) => `select(ninf, sv${j}, vr${j} == ${r}u)`);
        return cand.reduce((acc, x) => `max(${acc}, ${x})`);
      }),
      hm ? cur.map((_, j) => `      lh${j} *= ${byRow("al", j)};`) : [],
    );
    cur.forEach((_, j) => {
      p(`      let pe${j} = select(0.0, exp(sv${j} - ${byRow("mn", j)}) * psc, sv${j} != ninf);`);
      if (hm) p(`      lh${j} += pe${j};`);
      // Quantized (head scales): V's scale on the probability of the held key's values.
      if (quant) p(`      let pq${j} = pe${j} * hvs${key(j)};`);
    });
    p(`      let slot0 = sgi - lane;`);
    const NV = U * R;
    for (const u of us) {
      for (const r of rows) {
        const vv = u * R + r;
        const holder = h.cf > 1 ? Math.floor(vv / h.cf) : vv * (L / NV);
        const src = `${quant ? "pq" : "pe"}${vv % h.cf}`;
        p(`      let p${u}_${r} = subgroupShuffle(${src}, slot0 + ${holder}u);`);
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
        if (v) {
          const row = (n: string) => `${n}${r}`;
          const sc = variantScore(v, `s${u}_${r}`, `key${u}`, row);
          p(`      s${u}_${r} = select(ninf, ${sc}, ${variantVisible(v, `key${u}`, row)});`);
        } else {
          p(`      s${u}_${r} = select(ninf, s${u}_${r}, key${u} < e${r});`);
        }
        p(`      bad |= select(0u, ${1 << r}u, poison_score(s${u}_${r}));`);
      }
    }
    newMax(rows.map((r) => us.map((u) => `s${u}_${r}`).reduce((a, x) => `max(${a}, ${x})`)), []);
    for (const r of rows) {
      for (const u of us) {
        p(`      let p${u}_${r} = select(0.0, exp(s${u}_${r} - mn${r}) * psc, s${u}_${r} != ninf);`);
      }
    }
  }
  return lines;
}
