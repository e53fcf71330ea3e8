/**
 * WGSL of the workgroup-memory decode kernel, the path for devices without subgroups (D a
 * power of two 16–256, rows·D ≤ 512): tiles of keys in two phases — partial dots per (key,
 * dim slice), one barrier, then P·V per (key group, 4 dims) with an online softmax per key
 * group — groups merged at the end.
 *
 * @module
 */
import type { GpuContext } from "../context.ts";
import { type Elem, META, segmentLoop, sizes } from "./_wgsl_meta.ts";
import { VISIBLE } from "./_wgsl_visibility.ts";
import { mainBindings, writeOut } from "./_wgsl_segments.ts";
import { mergeSlots } from "./_wgsl_merge.ts";
import {
  kvAt,
  kvLoad,
  pagedBindings,
  type PagedKernel,
  pagedKey,
  pagedSegment,
} from "./_wgsl_paged.ts";
import type { Geometry } from "./_launch_geometry.ts";
import {
  type KernelVariant,
  variantBindings,
  variantInputs,
  variantKey,
  variantRow,
  variantScore,
  variantSizes,
  variantVisible,
} from "./_wgsl_variant.ts";

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
  /** Attention variant features (`_wgsl_variant.ts`); absent or null for plain attention. */
  v?: KernelVariant | null;
  /** Paged K/V (`_wgsl_paged.ts`); absent or null for contiguous K/V. */
  pg?: PagedKernel | null;
}

/** Threads per workgroup of the workgroup-memory decode kernel. */
export const WGM_WG = 256;

/** Pipeline cache key of a workgroup-memory decode kernel. */
export function wgmKey(c: WgmConfig): string {
  return `attn-wgm:D${c.D}:R${c.R}:kv${c.kv}:q${c.q}:KT${c.KT}:gr${c.grMax}${variantKey(c.v)}${
    pagedKey(c.pg)
  }`;
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

/** The workgroup-memory decode kernel's configuration, or null when it does not apply. */
export function wgmConfig(
  ctx: GpuContext,
  g: Geometry,
  kv: Elem,
  q: Elem,
  v: KernelVariant | null = null,
): WgmConfig | null {
  const R = g.unitRows;
  const KT = wgmTile(g.D, R);
  if (KT === null) return null;
  const G = (WGM_WG * 4) / g.D;
  const fixed = R * g.D * 4 + 2 * R * WGM_WG * 4 + G * R * 8 + 64;
  const room = ctx.limits.maxComputeWorkgroupStorageSize - fixed;
  const grMax = Math.min(G, Math.floor(room / (R * g.D * 4)));
  if (grMax < 1) return null;
  const c: WgmConfig = { D: g.D, R, kv, q, KT, grMax };
  if (v) c.v = v;
  return c;
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
  const v = c.v ?? null;
  const pg = c.pg ?? null;
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
    if (v) {
      variantRow(v, `${r}`, `i${r}`, `i${r} < Sq`, `h * group + ${r}u / rpb`, "    ").forEach(p);
    } else p(`    let e${r} = select(0u, min(k1, visible(len, Sq, i${r}, causal)), i${r} < Sq);`);
  }
  p(`    let kend = max(${rows.map((r) => `e${r}`).join(", max(")}, 0u${")".repeat(R)};`);
  p(`    let emin = min(${rows.map((r) => `select(kend, e${r}, i${r} < Sq)`).join(", min(")}, kend${
    ")".repeat(R)
  };`);
  if (v?.wl) {
    p(`    let smax = max(${rows.map((r) => `select(0u, s${r}, i${r} < Sq)`).join(", max(")}, 0u${
      ")".repeat(R)
    };`);
  }
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
  p(`      let kq = ${kvAt(pg, "min(t0 + qj, kend - 1u)", D4)} + qsl * ${SL / 4}u;`);
  for (let x = 0; x < SL / 4; x++) p(`      let ka${x} = ${ld4(kvLoad(pg, "K", `kq + ${x}u`))};`);
  for (let jj = 0; jj < KPG; jj++) {
    p(`      let vk${jj} = t0 + g * ${KPG}u + ${jj}u;`);
    p(`      let va${jj} = ${
      ld4(kvLoad(pg, "V", `${kvAt(pg, `min(vk${jj}, kend - 1u)`, D4)} + d4`))
    };`);
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
      if (v) {
        const row = (n: string) => `${n}${r}`;
        const sc = variantScore(v, `(${terms.join(" + ")})`, `vk${jj}`, row);
        p(`      let s${r}_${jj} = select(ninf, ${sc}, ${variantVisible(v, `vk${jj}`, row)});`);
      } else {
        p(`      let s${r}_${jj} = select(ninf, ${terms.join(" + ")}, vk${jj} < e${r});`);
      }
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
    const vis = (jj: number) =>
      v ? variantVisible(v, `vk${jj}`, (n) => `${n}${r}`) : `vk${jj} < e${r}`;
    const masked = ps.map((jj) => `select(vec4<f32>(0.0), p${r}_${jj} * va${jj}, ${vis(jj)})`);
    p(`      if (t0 + ${KT}u > emin${v?.wl ? " || t0 < smax" : ""}) {`);
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
  return `${c.q === "f16" || v?.bias === "f16" ? "enable f16;" : ""}
// attention, workgroup-memory decode kernel: ${wgmKey(c)}
${mainBindings(c.q, ldT)}${variantBindings(v, 7)}${
    pagedBindings(pg, 7 + variantInputs(v).length, ldT, D4)
  }
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
  ${sizes()}${variantSizes(v)}
  let qj = tid % ${KT}u;
  let qsl = tid / ${KT}u;
  let g = tid / ${D4}u;
  let d4 = tid % ${D4}u;
  let act = tid < ${R * D4}u;
  let fr = min(tid / ${D4}u, ${R - 1}u);
  let fj = tid % ${D4}u;
${segmentLoop()}${pagedSegment(pg, "    ")}
${lines.join("\n")}
${writeOut(D, c.q, false, v?.sinks)}
  }
}
`;
}
