/**
 * WGSL of the subgroup kernel's step from a batch's partial dot products to probabilities:
 * the reduction of the `U · R` partial dot products a lane holds over the `L` lanes of a key
 * (a butterfly, or per-value shuffles), the masks (past a row's end, variants), the NaN/+∞
 * poison bits, the running max of each row and the rescale factor of the old state, and the
 * probabilities `p${u}_${r}` every lane of a slot then holds (for its P·V update).
 *
 * Names it reads from the key loop: `s${u}_${r}` (lane-partial dot products), `base`, `slot`,
 * `lane`, `sgi`, `key${u}`, `e${r}`, `m${r}`, `ninf`, `psc`, `bad`; it declares `mn${r}`,
 * `al${r}`, `p${u}_${r}`.
 *
 * @module
 */
import { type KernelVariant, variantScore, variantVisible } from "./_wgsl_variant.ts";

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
}): string[] {
  const { R, U, L, S, v } = a;
  const rows = [...Array(R).keys()];
  const us = [...Array(U).keys()];
  const lines: string[] = [];
  const p = (s: string) => lines.push(s);
  const c = { lz: a.lz, bf: a.bf };
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
      if (v) {
        const row = (n: string) =>
          rows.slice(1).reduce((acc, r) => `select(${acc}, ${n}${r}, vr${j} == ${r}u)`, `${n}0`);
        const sc = variantScore(v, x, `vk${j}`, row);
        p(`      let sv${j} = select(ninf, ${sc}, ${variantVisible(v, `vk${j}`, row)});`);
      } else {
        const e = rows.slice(1).reduce(
          (acc, r) => `select(${acc}, e${r}, vr${j} == ${r}u)`,
          "e0",
        );
        p(`      let sv${j} = select(ninf, ${x}, vk${j} < ${e});`);
      }
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
      p(`      let pe${j} = select(0.0, exp(sv${j} - ${mn}) * psc, sv${j} != ninf);`);
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
    newMax(rows.map((r) => us.map((u) => `s${u}_${r}`).reduce((a, x) => `max(${a}, ${x})`)));
    for (const r of rows) {
      for (const u of us) {
        p(`      let p${u}_${r} = select(0.0, exp(s${u}_${r} - mn${r}) * psc, s${u}_${r} != ninf);`);
      }
    }
  }
  return lines;
}
