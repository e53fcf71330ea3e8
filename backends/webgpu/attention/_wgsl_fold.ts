/**
 * WGSL of the subgroup kernel's subgroup-fold order (`SgConfig.sf`, batch-invariant launches;
 * the order and the runs: `_fold_runs.ts`). A segment is a run of pieces of `pk` keys; after
 * each piece a subgroup sums its slots (shuffles) and either folds the piece's state into its
 * running fold (`pm`, `pl`, `po`: the run starts the unit) or publishes it (a later run), then
 * starts the next piece from an empty state. No barrier, no store and no drained load between
 * the pieces of a run. At the run's end a unit in one run goes on to the kernel's own end
 * (slot sums, subgroup merge, output); a cut unit's run publishes its fold (first run) and
 * counts its publications, and the workgroup that completes the count loads the unit's
 * publications in order into the running state, folds each with the same lines, and goes on
 * to the same end.
 *
 * Publication slot `s` holds, for subgroup `g` and row `r`, state row `(s · NSG + g) · R + r`
 * of the partial buffer: (m, l) at word `2·row` (l = NaN for a row with a visible NaN/+∞
 * score), the outputs at `partOOff + D·row`. Stored and loaded atomically (`partStore`).
 *
 * @module
 */
import { partLoad, partStore } from "./_wgsl_segments.ts";

/** What the generators need of the kernel's registers. */
export interface FoldShape {
  /** Rows of the pass (compile-time). */
  rows: number;
  /** vec4 registers of a row's output a lane holds. */
  nv4: number;
  /** Lanes a key. */
  L: number;
  D: number;
  /** Subgroups a publication slot has room for (workgroup size / smallest subgroup size). */
  nsg: number;
  /** Row-relative vec4 index of lane-local vec4 j (a WGSL expression). */
  v4idx: (j: number) => string;
}

const rs = (f: Pick<FoldShape, "rows">) => [...Array(f.rows).keys()];
const js = (f: Pick<FoldShape, "nv4">) => [...Array(f.nv4).keys()];

/** The run's piece keys and start flag, the fold's registers and the next slot to publish. */
export function foldDecls(f: FoldShape): string[] {
  const out = [
    `    let pw = mt[sb + 8u];`,
    `    let pk = pw & 0x7fffffffu;`,
    `    let host = (pw >> 31u) != 0u;`,
    `    var pslot = part;`,
  ];
  for (const r of rs(f)) {
    out.push(`    var pm${r} = ninf;`, `    var pl${r} = 0.0;`);
    for (const j of js(f)) out.push(`    var po${r}_${j} = vec4<f32>(0.0);`);
  }
  return out;
}

/** The fold of the running state into (pm, pl, po), which empties the running state. */
function fold(f: FoldShape, ind: string): string[] {
  const out = [`${ind}{`];
  for (const r of rs(f)) {
    out.push(
      `${ind}  let fm${r} = max(pm${r}, m${r});`,
      `${ind}  let fa${r} = select(0.0, exp(pm${r} - fm${r}), pm${r} != ninf);`,
      `${ind}  let fb${r} = select(0.0, exp(m${r} - fm${r}), m${r} != ninf);`,
      `${ind}  pm${r} = fm${r};`,
      `${ind}  pl${r} = pl${r} * fa${r} + l${r} * fb${r};`,
    );
    for (const j of js(f)) {
      out.push(`${ind}  po${r}_${j} = po${r}_${j} * fa${r} + o${r}_${j} * fb${r};`);
    }
  }
  return [...out, ...empty(f, `${ind}  `), `${ind}}`];
}

function empty(f: FoldShape, ind: string): string[] {
  return rs(f).flatMap((r) => [
    `${ind}m${r} = ninf;`,
    `${ind}l${r} = 0.0;`,
    ...js(f).map((j) => `${ind}o${r}_${j} = vec4<f32>(0.0);`),
  ]);
}

/** Stores a subgroup's state (`m`, `l`, `o` registers with prefix `x`) in slot `slot`. */
function publish(f: FoldShape, x: "" | "p", slot: string, ind: string): string[] {
  const st = (i: string, v: string) => partStore(i, v, true);
  const out = [`${ind}{`, `${ind}  let bw = subgroupOr(bad);`, `${ind}  if (sgi < ${f.L}u) {`];
  for (const r of rs(f)) {
    out.push(
      `${ind}    if (rr${r} < R) {`,
      `${ind}      let pr = ((${slot}) * ${f.nsg}u + sgk) * R + rr${r};`,
      `${ind}      let ob = partOOff + pr * ${f.D}u;`,
    );
    for (const j of js(f)) {
      ["x", "y", "z", "w"].forEach((c, i) =>
        out.push(`${ind}      ${st(`ob + (${f.v4idx(j)}) * 4u + ${i}u`, `${x}o${r}_${j}.${c}`)}`)
      );
    }
    out.push(
      `${ind}      if (lane == 0u) {`,
      `${ind}        ${st("pr * 2u", `${x}m${r}`)}`,
      `${ind}        ${st("pr * 2u + 1u", `select(${x}l${r}, qnan, (bw & ${1 << r}u) != 0u)`)}`,
      `${ind}      }`,
      `${ind}    }`,
    );
  }
  return [...out, `${ind}  }`, `${ind}}`];
}

/**
 * The slots of each subgroup summed (they share the max) by shuffles: at a segment's end and,
 * in the fold order, at a piece's. `sumL` false: the denominators are summed elsewhere (the
 * kernel's held mode).
 */
export function slotSums(
  f: Pick<FoldShape, "rows" | "nv4" | "L">,
  ind: string,
  sumL = true,
): string[] {
  const out = [`${ind}for (var off = ${f.L}u; off < sgs; off <<= 1u) {`];
  for (const r of rs(f)) {
    if (sumL) out.push(`${ind}  l${r} += subgroupShuffleXor(l${r}, off);`);
    for (const j of js(f)) out.push(`${ind}  o${r}_${j} += subgroupShuffleXor(o${r}_${j}, off);`);
  }
  return [...out, `${ind}}`];
}

/** After each piece's keys (inside the loop over the run's pieces). */
export function pieceEnd(f: FoldShape): string[] {
  const ind = "    ";
  return [
    ...slotSums(f, ind),
    `${ind}if (host) {`,
    ...fold(f, `${ind}  `),
    `${ind}} else {`,
    ...publish(f, "", "pslot", `${ind}  `),
    `${ind}  pslot += 1u;`,
    `${ind}  bad = 0u;`,
    ...empty(f, `${ind}  `),
    `${ind}}`,
  ];
}

/**
 * After the run's last piece: publish and count (cut units), merge where this workgroup
 * completes the unit, and open `if (fin) {` with the fold as the running state (in slot 0 of
 * each subgroup: the kernel's end sums the slots again). The caller closes it after the end.
 */
export function runEnd(f: FoldShape): string[] {
  const ind = "    ";
  const ld = (i: string) => partLoad(i, true);
  const load: string[] = [];
  for (const r of rs(f)) {
    load.push(
      `${ind}        if (rr${r} < R) {`,
      `${ind}          let pr = (sl * ${f.nsg}u + sgk) * R + rr${r};`,
      `${ind}          let ob = partOOff + pr * ${f.D}u;`,
      `${ind}          m${r} = ${ld("pr * 2u")};`,
      `${ind}          l${r} = ${ld("pr * 2u + 1u")};`,
    );
    for (const j of js(f)) {
      const w = (i: number) => ld(`ob + (${f.v4idx(j)}) * 4u + ${i}u`);
      load.push(`${ind}          o${r}_${j} = vec4<f32>(${w(0)}, ${w(1)}, ${w(2)}, ${w(3)});`);
    }
    load.push(`${ind}        }`);
  }
  const keep = (x: string, zero: string) => `select(${zero}, ${x}, sgi < ${f.L}u)`;
  return [
    `${ind}var fin = part == 0xffffffffu;`,
    `${ind}if (!fin) {`,
    `${ind}  if (host) {`,
    ...publish(f, "p", "part", `${ind}    `),
    `${ind}  }`,
    `${ind}  storageBarrier();`,
    `${ind}  let itm = mt[sb + 5u];`,
    `${ind}  let first = mt[sb + 6u];`,
    `${ind}  let count = mt[sb + 7u];`,
    `${ind}  let npub = select((k1 - k0 + pk - 1u) / pk, 1u, host);`,
    `${ind}  if (tid == 0u) { wlast = select(0u, 1u, atomicAdd(&CNT[itm], npub) + npub == count); }`,
    `${ind}  fin = workgroupUniformLoad(&wlast) != 0u;`,
    `${ind}  if (fin) {`,
    `${ind}    storageBarrier();`,
    `${ind}    bad = 0u;`,
    ...rs(f).flatMap((r) => [
      `${ind}    pm${r} = ninf;`,
      `${ind}    pl${r} = 0.0;`,
      ...js(f).map((j) => `${ind}    po${r}_${j} = vec4<f32>(0.0);`),
    ]),
    `${ind}    for (var pj = 0u; pj < count; pj++) {`,
    `${ind}      let sl = first + pj;`,
    `${ind}      {`,
    ...load,
    `${ind}      }`,
    ...fold(f, `${ind}      `),
    `${ind}    }`,
    `${ind}  }`,
    `${ind}}`,
    `${ind}if (fin) {`,
    ...rs(f).flatMap((r) => [
      `${ind}m${r} = pm${r};`,
      `${ind}l${r} = ${keep(`pl${r}`, "0.0")};`,
      ...js(f).map((j) => `${ind}o${r}_${j} = ${keep(`po${r}_${j}`, "vec4<f32>(0.0)")};`),
    ]),
  ];
}
