/**
 * WGSL of the subgroup attention kernel (needs `subgroups`; D a multiple of 32), the fast
 * path: one workgroup per worker, segment after segment. `L` lanes share one key, each lane
 * owning `D / L` dims of q, of the running output and of the key/value rows it loads with
 * wide vector reads (8 halves as a `vec4<u32>`, unpacked with `unpack2x16float`, so f16 K/V
 * need no `enable f16`; quantized int8/float8e4m3 bytes 16, 8 or 4 a load, decoded in
 * registers, K's scale on each key's dot product and V's on its probability: `_wgsl_quant.ts`).
 * A subgroup holds `subgroupSize / L` keys at a time and keeps one
 * running max per query row shared by the whole subgroup (`subgroupMax` once per batch of `U`
 * keys), so no barrier is needed while the keys stream; K and V loads of a batch are issued
 * before any math. The `U · R` dot products of a slot are finished by a butterfly (each xor
 * step halves the values a lane carries), so a lane ends with whole scores and one exp each;
 * the probabilities are broadcast back with `subgroupShuffle` (`_wgsl_probabilities.ts`). At
 * the end of a segment the slots of a subgroup are summed by shuffles (same max, so plain
 * sums), and the subgroups are merged through workgroup memory in a fixed order
 * (deterministic). Units with more rows than fit in registers (prefill, large GQA groups)
 * are covered in passes of R rows, each pass streaming the segment's keys again. Two options, off by default (10–35 points slower on an
 * H200; bench/NOTES.md, run 4): row groups `G` put a unit's rows on different subgroups that
 * stream the same keys, and staged tiles load the next tile of K/V coalesced into registers
 * while the subgroups compute on the current one from workgroup memory. Non-finite values
 * follow the float64 reference: a visible NaN/+∞ score poisons its row (a bit-tested mask,
 * carried as l = NaN in partial states), and keys hidden from a row are selected out of P·V
 * in a segment's last batches (`0 · ∞ = NaN`).
 *
 * The kernel can merge cut units itself (`fm`): each piece's workgroup publishes its state,
 * fences (`storageBarrier`, device scope in wgpu) and counts it on the unit's integer counter;
 * the one that completes the count fences again and folds the pieces exactly as the reduce
 * kernel does (one shared generator), so the two give the same bits. The partial states are
 * then written and read with atomics only: a fence orders memory, but a plain load may still
 * be served from the reading multiprocessor's L1, which another multiprocessor's store does
 * not invalidate — on an H200 a flash-decoding row now and then merged a stale `(m, l)` line
 * (bench/_determinism.ts; bench/NOTES.md, session 5).
 *
 * Batch-invariant launches may run in the subgroup-fold order instead (`SgConfig.sf`,
 * `_wgsl_fold.ts`): a segment is a run of pieces, folded per subgroup as it streams.
 *
 * @module
 */
import { META, segmentLoop, sizes } from "./_wgsl_meta.ts";
import { visibleFrom } from "./_wgsl_visibility.ts";
import { mainBindings, writeOut } from "./_wgsl_segments.ts";
import { deferredMerge, fusedMerge, mergeSlots, oneRoundMerge } from "./_wgsl_merge.ts";
import { foldDecls, type FoldShape, pieceEnd, runEnd, slotSums } from "./_wgsl_fold.ts";
import * as runs from "./_wgsl_piece_runs.ts";
import {
  held,
  heldDenominators,
  heldLanes,
  heldMode,
  probabilityLines,
} from "./_wgsl_probabilities.ts";
import { type SgConfig, sgKey, sgLoadWidth } from "./subgroup_config.ts";
import {
  keyLoads,
  kvAt,
  kvLoad,
  pagedBindingCount,
  pagedBindings,
  pagedSegment,
} from "./_wgsl_paged.ts";
import {
  headScales,
  keyScales,
  quantBindings,
  quantLoadType,
  quantUnpack,
  takenScales,
} from "./_wgsl_quant.ts";
import {
  variantBindings,
  variantInputs,
  variantRow,
  variantSizes,
  variantVisible,
} from "./_wgsl_variant.ts";

/** WGSL of the subgroup kernel. */
export function sgWgsl(c: SgConfig): string {
  const { D, R, wg, L, U, nsMax, G } = c;
  const v = c.v ?? null;
  const pg = c.pg ?? null;
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
  const qk = c.qk ?? null;
  const fT = c.kv === "f32" ? "vec4<f32>" : W === 8 ? "vec4<u32>" : "vec2<u32>";
  const ldT = qk ? quantLoadType(W) : fT;
  const unpack = (a: string): string[] => {
    // int8 through float16 for one-row units (faster there, slower for four rows).
    if (qk) return quantUnpack(qk, W, a, R === 1);
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
  const vLoad = (idx: string, key: string) => vUse(kvLoad(c.pg, "V", idx), key);
  // Row-relative vec4 index of lane-local vec4 j.
  const v4idx = (j: number) => `(${Math.floor(j / V4) * L}u + lane) * ${V4}u + ${j % V4}u`;
  const rows = [...Array(R).keys()];
  const us = [...Array(U).keys()];
  const js = [...Array(NV4).keys()];
  const chs = [...Array(CH).keys()];
  const lines: string[] = [];
  const p = (s: string) => lines.push(s);
  // Quantized K/V: each key's scales (`ksc${u}`, `vsc${u}`; `_wgsl_quant.ts`).
  const tok = qk?.sc === "token";
  // Held mode (`_wgsl_probabilities.ts`: multi-row units over K/V with head scales): a lane
  // keeps the denominators of the (key, row) pairs it holds after the butterfly and applies
  // the head scales to those alone (`hks${h}`, `hvs${h}`).
  const hm = heldMode(c.bf, c.lz, qk?.sc === "head");
  const hl = held(R, U, L);
  const scales = (u: number, key: string, decl: string, pre: string, ind: string) =>
    keyScales(qk, pg, u, key, decl, pre, ind).forEach(p);
  const takeScales = (u: number) => takenScales(qk!, pg, u).forEach(p);
  const heldScales = () => {
    if (!hm) return;
    for (let h = 0; h < hl.nh; h++) {
      p(`      let hks${h} = ksh;`);
      p(`      let hvs${h} = vsh;`);
    }
  };
  if (qk) headScales(qk, pg).forEach(p);
  if (hm) heldLanes(R, U, L).forEach(p);
  // The subgroup-fold order (batch-invariant runs of pieces, `_wgsl_fold.ts`).
  const sf: FoldShape | null = c.sf ? { rows: R, nv4: NV4, L, D, nsg: c.sf, v4idx } : null;
  if (sf && (KT || c.tm || v?.wl || hm || G > 1 || !c.fm || c.dm)) {
    throw new Error("sgWgsl: the subgroup-fold order needs the plain decode key loop");
  }
  // Piece runs (batch-invariant runs of pieces, one segment a run: `_wgsl_piece_runs.ts`).
  const pr = c.pr ?? false;
  if (pr && (sf || KT || c.tm || v?.wl || hm || G > 1 || !c.fm || c.dm)) {
    throw new Error("sgWgsl: piece runs need the plain decode key loop and the in-kernel merge");
  }
  if (c.pp && (!pr || c.mb !== 2)) {
    throw new Error("sgWgsl: two pieces a merge need piece runs and two merge barriers");
  }

  // Per-row setup of one segment.
  for (const r of rows) {
    p(`    let rr${r} = rc + ${G > 1 ? `rgrp * ${R}u + ` : ""}${r}u;`);
    p(`    let i${r} = qb * rpb + rr${r} % rpb;`);
    p(`    let ok${r} = rr${r} < R && i${r} < Sq;`);
    p(`    let qrow${r} = select(0u, (b * Hq + h * group + rr${r} / rpb) * Sq + i${r}, ok${r});`);
    if (v) {
      variantRow(v, `${r}`, `i${r}`, `ok${r}`, `h * group + rr${r} / rpb`, "    ").forEach(p);
    } else {
      p(`    let e${r} = select(0u, min(k1, visible(len, Sq, i${r}, causal)), ok${r});`);
    }
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
  if (v?.wl) {
    // Keys from smax on are past every row's window start.
    p(`    let smax = max(${rows.map((r) => `select(0u, s${r}, ok${r})`).join(", max(")}, 0u${
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
      const gu = `min(${t} * ${UPR}u + tid + ${i * wg}u, klu)`;
      if (pg) {
        p(`${indent}let gu${i} = ${gu};`);
        p(`${indent}let gx${i} = ${kvAt(pg, `gu${i} / ${UPR}u`, UPR)} + gu${i} % ${UPR}u;`);
      } else p(`${indent}let gx${i} = kvRow0 * ${UPR}u + ${gu};`);
      p(`${indent}sk${i} = ${kvLoad(pg, "K", `gx${i}`)};`);
      p(`${indent}sv${i} = ${kvLoad(pg, "V", `gx${i}`)};`);
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
      p(`    let kr0_${u} = ${kvAt(pg, `min(k0 + ${u * S}u + slot, klast)`, UPR)} + lane;`);
      for (const ch of chs) {
        p(`    var nka${u}_${ch} = ${kvLoad(pg, "K", `kr0_${u} + ${ch * L}u`)};`);
      }
      for (const ch of chs) {
        p(`    var nva${u}_${ch} = ${kvLoad(pg, "V", `kr0_${u} + ${ch * L}u`)};`);
      }
      if (tok) scales(u, `min(k0 + ${u * S}u + slot, klast)`, "var ", "n", "    ");
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
  // The softmax denominators of the (key, row) pairs a lane holds after the butterfly.
  if (hm) { for (let j = 0; j < hl.cf; j++) p(`    var lh${j} = 0.0;`); }
  // Rows (bits) with a visible NaN/+∞ score seen by this lane; OR-ed over the subgroup once
  // per segment.
  p(`    var bad = 0u;`);
  if (sf) foldDecls(sf).forEach(p);
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
  // The next batch's K and V words of key slot u (index `kn${u}`): with several page buffers
  // one choice of buffer for all of them.
  const nextLoads = (u: number) =>
    keyLoads(
      pg,
      `kn${u}`,
      (["K", "V"] as const).flatMap((t) =>
        chs.map((ch) => ({ dst: `n${t.toLowerCase()}a${u}_${ch}`, t, off: `${ch * L}u` }))
      ),
      "      ",
      `${u}`,
    ).forEach(p);
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
        if (qk) takeScales(u);
      } else if (c.pf) {
        for (const ch of chs) p(`      let ka${u}_${ch} = nka${u}_${ch};`);
        for (const ch of chs) p(`      let va${u}_${ch} = ${vUse(`nva${u}_${ch}`, `key${u}`)};`);
        if (qk) takeScales(u);
        p(`      let kn${u} = ${kvAt(pg, `min(key${u} + ${S * U}u, klast)`, UPR)} + lane;`);
        nextLoads(u);
        if (tok) scales(u, `min(key${u} + ${S * U}u, klast)`, "", "n", "      ");
      } else {
        p(`      let kr${u} = ${kvAt(pg, `min(key${u}, kend - 1u)`, UPR)} + lane;`);
        for (const ch of chs) {
          p(`      let ka${u}_${ch} = ${kvLoad(pg, "K", `kr${u} + ${ch * L}u`)};`);
        }
        for (const ch of chs) {
          p(`      let va${u}_${ch} = ${vLoad(`kr${u} + ${ch * L}u`, `key${u}`)};`);
        }
        scales(u, `min(key${u}, kend - 1u)`, "let ", "", "      ");
      }
    }
    heldScales();
    for (const u of us) {
      const kf = chs.flatMap((ch) => unpack(`ka${u}_${ch}`));
      kf.forEach((x, j) => p(`      let kf${u}_${j} = ${x};`));
      for (const r of rows) {
        const dots = js.map((j) => `dot(q${r}_${j}, kf${u}_${j})`).join(" + ");
        // Quantized: K's scale once per key, on the lane's partial dot product.
        p(`      var s${u}_${r} = ${qk && !hm ? `ksc${u} * (${dots})` : dots};`);
      }
    }
    const rescale = (r: number) => js.map((j) => `      o${r}_${j} *= al${r};`);
    probabilityLines({ R, U, L, S, bf: c.bf, lz: c.lz, v, held: hm, rescale }).forEach(p);
    for (const u of us) {
      const vf = chs.flatMap((ch) => unpack(`va${u}_${ch}`));
      vf.forEach((x, j) => p(`      let vf${u}_${j} = ${x};`));
    }
    if (!hm) {
      for (const r of rows) {
        p(`      l${r} = l${r} * al${r} + ${us.map((u) => `p${u}_${r}`).join(" + ")};`);
      }
    }
    // Quantized: V's scale once per key, on the probability that weighs its stored values
    // (held head scales: on the held probabilities before their broadcast).
    const pw = (u: number, r: number) => qk && !hm ? `pv${u}_${r}` : `p${u}_${r}`;
    if (qk && !hm) {
      for (const u of us) {
        for (const r of rows) p(`      let pv${u}_${r} = p${u}_${r} * vsc${u};`);
      }
    }
    for (const r of rows) {
      for (const j of js) {
        const vis = (u: number) =>
          v ? variantVisible(v, `key${u}`, (n) => `${n}${r}`) : `key${u} < e${r}`;
        const term = (u: number) =>
          masked
            ? `select(vec4<f32>(0.0), ${pw(u, r)} * vf${u}_${j}, ${vis(u)})`
            : `${pw(u, r)} * vf${u}_${j}`;
        const old = hm ? `o${r}_${j}` : `o${r}_${j} * al${r}`;
        p(`      o${r}_${j} = ${old} + ${us.map(term).join(" + ")};`);
      }
    }
    for (const r of rows) p(`      m${r} = mn${r};`);
    if (c.rot) {
      for (const u of us) {
        p(`      let kn${u} = ${
          kvAt(pg, `min(base + ${S * U + u * S}u + slot, klast)`, UPR)
        } + lane;`);
        nextLoads(u);
        if (tok) scales(u, `min(base + ${S * U + u * S}u + slot, klast)`, "", "n", "      ");
      }
    }
  };
  // The end of a segment (of a piece in piece runs): the slots of each subgroup summed, the
  // subgroups merged through workgroup memory into the thread's row element (M, Lt, acc, rbad).
  // The merge's barriers (`SgConfig.mb`): 3 (a barrier for the slots' (m, l), one for their
  // outputs, one after the reads), 2 (one round: (m, l) and outputs published together) or 1
  // (and two copies of `wml`/`wo`, alternating, so the next merge's writes cannot meet this
  // one's reads: no barrier after them).
  const mb = c.mb ?? 3;
  const mlN = (wg / 8) * R;
  const woN = nsMax * RT * D4;
  // Two copies of the merge's arrays: one barrier a merge (`mb` 1) or two pieces a merge.
  const copies = mb === 1 || c.pp ? 2 : 1;
  // The running state back to empty (a piece run's next piece starts from it).
  const resetState = () => {
    for (const r of rows) {
      p(`    m${r} = ninf;`);
      p(`    l${r} = 0.0;`);
      for (const j of js) p(`    o${r}_${j} = vec4<f32>(0.0);`);
    }
    p(`    bad = 0u;`);
  };
  // Each subgroup's slots summed and its (m, l) written to `wml` at `mlBase`; the stores of
  // its outputs into `wo` at `woBase` (the merge's writers run them).
  const subgroupStates = (mlBase: string, woBase: string) => {
    p(`    let badw = subgroupOr(bad);`);
    // Held mode: the denominators are the held ones summed over the subgroup.
    if (hm) heldDenominators(R, U, L).forEach(p);
    // Sum the slots of a subgroup (they share the max).
    slotSums({ rows: R, nv4: NV4, L }, "    ", !hm).forEach(p);
    p(`    if (sgi == 0u) {`);
    for (const r of rows) {
      p(`      wml[${mlBase}sgk * ${RT}u + ${
        G > 1 ? `rgrp * ${R}u + ` : ""
      }${r}u] = vec2<f32>(m${r}, select(l${r}, qnan, (badw & ${1 << r}u) != 0u));`);
    }
    p(`    }`);
    const stores: string[] = [];
    for (const r of rows) {
      const row = `${G > 1 ? `rgrp * ${R}u + ` : ""}${r}u`;
      for (const j of js) {
        stores.push(`wo[${woBase}(sl * ${RT}u + ${row}) * ${D4}u + ${v4idx(j)}] = o${r}_${j};`);
      }
    }
    return stores;
  };
  const merge = (mlBase: string, woBase: string, stores: string[]) => ({
    mlPending: mb < 3,
    noTrailing: mb === 1,
    mlBase,
    woBase,
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
    // int8 K/V keep the loops: the unrolled merge made their lean calls up to 19 % slower on
    // an H100 (one-row units; 4.5 % with four rows), float16 and e4m3 none (bench/NOTES.md,
    // session (19)).
    unroll: qk?.fmt !== "i8",
  });
  const segmentEnd = () => {
    const mlBase = mb === 1 ? `wpar * ${mlN}u + ` : "";
    const woBase = mb === 1 ? `wpar * ${woN}u + ` : "";
    const stores = subgroupStates(mlBase, woBase);
    if (mb === 3) p(`    workgroupBarrier();`);
    mergeSlots(merge(mlBase, woBase, stores)).forEach(p);
    if (mb === 1) p(`    wpar ^= 1u;`);
  };
  // Piece runs, two pieces a merge (`SgConfig.pp`): a piece's subgroup states go to copy
  // `wpar`; every second piece and the run's last, one barrier publishes the held copies,
  // merged and folded in piece order, and a second keeps the next writes off them.
  const pairedPieceEnd = (out: string) => {
    const at = (x: string, n: number) => `${x} * ${n}u + `;
    const stores = subgroupStates(at("wpar", mlN), at("wpar", woN));
    const parts = oneRoundMerge(merge(at("cp", mlN), at("cp", woN), stores));
    parts.writes.forEach(p);
    resetState();
    p(`    if (wpar == 1u || pkb + pk >= k1) {`);
    p(`    workgroupBarrier();`);
    p(`    for (var cp = 0u; cp <= wpar; cp++) {`);
    parts.reads.forEach(p);
    runs.pieceEnd(D, out, "    ").forEach(p);
    p(`    }`);
    p(`    workgroupBarrier();`);
    p(`    wpar = 0u;`);
    p(`    } else {`);
    p(`    wpar = 1u;`);
    p(`    }`);
  };
  const start = KT ? "t0" : "k0";
  const stop = KT ? "tend" : "kend";
  const SU = S * U;
  const loop = (cond: string, masked: boolean) => {
    p(`    for (${cond}; base += ${SU}u) {`);
    body(masked);
    p(`    }`);
  };
  if (sf) {
    p(`    for (var pb = k0; pb < kend; pb += pk) {`);
    p(`    let pe = min(pb + pk, kend);`);
    loop(`var base = pb; base < pe`, false);
    pieceEnd(sf).forEach(p);
    p(`    }`);
    runEnd(sf).forEach(p);
  } else if (pr) {
    // Each piece ends as a segment does (slot sums, subgroup merge), then folds or publishes
    // its state and starts the next from an empty one; the run ends after the loop.
    runs.pieceLoop("    ").forEach(p);
    loop(`var base = pkb; base < pke`, false);
    if (c.pp) pairedPieceEnd(writeOut(D, c.q, c.fm, v?.sinks));
    else {
      segmentEnd();
      runs.pieceEnd(D, writeOut(D, c.q, c.fm, v?.sinks), "    ").forEach(p);
      resetState();
    }
    p(`    }`);
    runs.runOutput(D, c.q, v?.sinks ?? false, "    ").forEach(p);
  } else if (v?.wl || c.tm) {
    p(`    var base = ${start};`);
    // Batches holding keys before some row's window start: masked like the tail (the V of
    // a hidden key may be ±∞ or NaN; 0 · ∞ = NaN).
    if (v?.wl) loop(`; base < min(${stop}, smax)`, true);
    if (c.tm) {
      loop(`; base + ${SU}u <= min(${stop}, emin)`, false);
      loop(`; base < ${stop}`, true);
    } else loop(`; base < ${stop}`, false);
  } else loop(`var base = ${start}; base < ${stop}`, false);
  if (KT) p(`    }`);
  if (!pr) segmentEnd();

  const f16 = c.kv === "f16" || c.q === "f16";
  return `${c.q === "f16" || v?.bias === "f16" ? "enable f16;" : ""}
// attention, subgroup kernel: ${sgKey(c)}${f16 ? " (f16 K/V unpacked from u32)" : ""}
${mainBindings(c.q, ldT, c.fm)}${
    c.fm
      ? `
@group(0) @binding(7) var<storage, read_write> CNT: array<atomic<u32>>;
var<workgroup> wlast: u32;`
      : ""
  }${variantBindings(v, c.fm ? 8 : 7)}${
    pagedBindings(pg, (c.fm ? 8 : 7) + variantInputs(v).length, ldT, UPR)
  }${quantBindings(qk, pg, (c.fm ? 8 : 7) + variantInputs(v).length + pagedBindingCount(pg))}
var<workgroup> wml: array<vec2<f32>, ${copies * mlN}>;
var<workgroup> wo: array<vec4<f32>, ${copies * woN}>;
var<workgroup> wns: u32;
${
    KT
      ? `var<workgroup> Kt: array<${ldT}, ${KT * UPR}>;
var<workgroup> Vt: array<${ldT}, ${KT * UPR}>;`
      : ""
  }
${visibleFrom(`mt[${META.negInfBits}]`)}
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
  ${sizes()}${variantSizes(v)}
  let lane = sgi % ${L}u;
  let rgrp = sgid % ${G}u;
  let sgk = sgid / ${G}u;
  let slot = sgk * (sgs / ${L}u) + sgi / ${L}u;
  // The thread's item of the final merge: row fr, vec4 fj of the output.
  let act0 = tid < ${RT * D4}u;
  let fr0 = min(tid / ${D4}u, ${RT - 1}u);
  let fj = tid % ${D4}u;
${copies === 2 ? "  var wpar = 0u;\n" : ""}${segmentLoop()}${pagedSegment(pg, "    ")}
${
    pr
      ? runs.runDecls("    ").join("\n") + "\n"
      : ""
  }    // Rows of the unit in passes of ${RT} (one pass for decode); a later pass re-reads the
    // segment's keys, from cache.
    for (var rc = 0u; rc < R; rc += ${RT}u) {
    let fr = rc + fr0;
    let act = act0 && fr < R;
${lines.join("\n")}
${sf ? "    let part = 0xffffffffu;\n" : ""}${pr ? "" : writeOut(D, c.q, c.fm, v?.sinks)}${
    sf ? "    }\n" : ""
  }
    }
${c.fm && !c.dm && !sf && !pr ? fusedMerge(D, c.q, wg, v?.sinks) : ""}${
    pr ? runs.runMerge(D, c.q, wg, v?.sinks ?? false) : ""
  }  }
${c.fm && c.dm ? deferredMerge(D, c.q, wg, v?.sinks) : ""}}
`;
}
