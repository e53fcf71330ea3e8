/**
 * Attention variants in the kernels (the math: VARIANTS.md; `AttentionVariant`): which
 * features a kernel is generated with, their words in the uploaded `meta`, and the WGSL
 * fragments every kernel splices in — per-row positions and visible key range (causal from
 * positions, sliding window), the score transforms in order (soft-cap, ALiBi, bias), and the
 * sink state merged once where a row is written. A plain run has no kernel variant (null):
 * its kernels are generated exactly as before, so the plain path costs nothing.
 *
 * Positions: row `i` of batch entry `b` sits at `p = positionLens[b] − Sq + i`; a run's local
 * key `j` at `keyOffset + j`. The kernels work with the row's local position `P = p −
 * keyOffset` (i32), so the visible local keys are `[max(0, P − left), min(len, P + 1 (causal),
 * P + right + 1))`.
 *
 * @module
 */
import type { AttentionRun } from "../../../schedule/attention_plan.ts";
import type { Elem } from "./_wgsl_meta.ts";
import { META, META_SEG_OFFS } from "./_wgsl_meta.ts";

/** The variant features a kernel is generated with (null: plain attention). */
export interface KernelVariant {
  /** Finite left window: keys before `P − left` are hidden (a per-key lower bound). */
  readonly wl: boolean;
  /** Finite right window: keys after `P + right` are hidden. */
  readonly wr: boolean;
  /** Soft-cap `c · tanh(s / c)`. */
  readonly cap: boolean;
  /** One sink logit per query head merged once where a row is written (binds `SNK`). */
  readonly sinks: boolean;
  /** ALiBi: `s −= slope · |P − j|` (binds `SLP`). */
  readonly alibi: boolean;
  /** Additive bias storage type (binds `BIAS`), or null. */
  readonly bias: Elem | null;
  /** The bias varies along keys (its last dim is not broadcast): one load per score. */
  readonly bk: boolean;
}

/** Words of the variant block of `meta` before the per-batch position lengths. */
export const VAR_WORDS = 9;

/** Largest window bound kept (a wider window sees every key; keeps i32 math in range). */
const WIN_MAX = 1 << 30;

/**
 * The kernel variant of a run: null for textbook attention whose positions are the run's
 * own (keyOffset 0, positionLens = kvLens), so those kernels stay what they were.
 */
export function kernelVariant(run: AttentionRun, biasElem: Elem | null): KernelVariant | null {
  const v = run.variant;
  const ownPositions = run.keyOffset === 0 &&
    run.positionLens.length === run.kvLens.length &&
    run.positionLens.every((n, b) => n === run.kvLens[b]);
  const wl = v.windowLeft !== Infinity;
  const wr = v.windowRight !== Infinity;
  const cap = v.softcap > 0;
  if (!wl && !wr && !cap && !v.sinks && !v.alibi && !v.bias && ownPositions) return null;
  const bias = v.bias ? biasElem ?? "f32" : null;
  const bk = v.bias !== null && v.bias.shape[3] > 1;
  return { wl, wr, cap, sinks: v.sinks, alibi: v.alibi, bias, bk };
}

/** Pipeline-key suffix naming a kernel variant's features ("" for plain). */
export function variantKey(v: KernelVariant | null | undefined): string {
  if (!v) return "";
  const f = [v.wl ? "wl" : "", v.wr ? "wr" : "", v.cap ? "cap" : "", v.sinks ? "sk" : ""];
  f.push(v.alibi ? "al" : "", v.bias ? `b${v.bias}${v.bk ? "k" : ""}` : "");
  return `:var[${f.filter((x) => x).join(",")}]`;
}

function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0];
}

/**
 * The variant block of `meta` (placed right after the per-worker segment offsets, where the
 * kernels find it from the worker count): key offset, window bounds, soft-cap and its
 * inverse, the bias strides (batch, head, row; its key stride is 1 or 0), then positionLens.
 */
export function variantWords(run: AttentionRun, B: number): number[] {
  const v = run.variant;
  const w = [
    run.keyOffset,
    Math.min(v.windowLeft, WIN_MAX),
    Math.min(v.windowRight, WIN_MAX),
    f32Bits(v.softcap),
    f32Bits(v.softcap > 0 ? 1 / v.softcap : 0),
  ];
  const s = v.bias?.shape ?? [1, 1, 1, 1];
  // Row-major strides; a broadcast (size-1) dim has stride 0.
  const sn = s[3] > 1 ? 1 : 0;
  const si = s[2] > 1 ? s[3] : 0;
  const sh = s[1] > 1 ? s[2] * s[3] : 0;
  const sb = s[0] > 1 ? s[1] * s[2] * s[3] : 0;
  w.push(sb, sh, si, sn);
  for (let b = 0; b < B; b++) w.push(run.positionLens[b]);
  return w;
}

/** WGSL bindings of the variant's inputs, from binding `first` on: sinks, slopes, bias. */
export function variantBindings(v: KernelVariant | null | undefined, first: number): string {
  if (!v) return "";
  const out: string[] = [];
  let i = first;
  if (v.sinks) out.push(`@group(0) @binding(${i++}) var<storage, read> SNK: array<f32>;`);
  if (v.alibi) out.push(`@group(0) @binding(${i++}) var<storage, read> SLP: array<f32>;`);
  if (v.bias) out.push(`@group(0) @binding(${i++}) var<storage, read> BIAS: array<${v.bias}>;`);
  return "\n" + out.join("\n");
}

/** Names of the inputs a kernel variant binds, in binding order. */
export function variantInputs(
  v: KernelVariant | null | undefined,
): ("sinks" | "alibiSlopes" | "bias")[] {
  if (!v) return [];
  const out: ("sinks" | "alibiSlopes" | "bias")[] = [];
  if (v.sinks) out.push("sinks");
  if (v.alibi) out.push("alibiSlopes");
  if (v.bias) out.push("bias");
  return out;
}

/** WGSL prologue (after `sizes()`): the variant block's words. */
export function variantSizes(v: KernelVariant | null | undefined): string {
  if (!v) return "";
  return `
  let vo = ${META_SEG_OFFS + 1}u + mt[${META.numWorkers}];
  let kOff = i32(mt[vo]);
  let winL = i32(mt[vo + 1u]);
  let winR = i32(mt[vo + 2u]);
  let capC = bitcast<f32>(mt[vo + 3u]);
  let capI = bitcast<f32>(mt[vo + 4u]);
  let bsB = mt[vo + 5u];
  let bsH = mt[vo + 6u];
  let bsI = mt[vo + 7u];
  let bsN = mt[vo + 8u];`;
}

/**
 * WGSL lines of one row's setup in a segment `[k0, k1)`: local position `P<r>`, end `e<r>`
 * (as the plain kernels' `e`), and per feature its start `s<r>` and width `wn<r>` (window),
 * slope `sl<r>` (ALiBi), bias row base `bb<r>`. `i` is the query index, `ok` whether the row
 * exists, `hq` its query head.
 */
export function variantRow(
  v: KernelVariant,
  r: string,
  i: string,
  ok: string,
  hq: string,
  ind: string,
): string[] {
  const L = [
    `let P${r} = i32(mt[vo + ${VAR_WORDS}u + b]) - i32(Sq) + i32(${i}) - kOff;`,
    `var hi${r} = i32(len);`,
    `if (causal) { hi${r} = min(hi${r}, P${r} + 1); }`,
  ];
  if (v.wr) L.push(`hi${r} = min(hi${r}, P${r} + winR + 1);`);
  L.push(`let e${r} = select(0u, min(k1, u32(max(hi${r}, 0))), ${ok});`);
  if (v.wl) {
    L.push(`let s${r} = u32(max(P${r} - winL, 0));`);
    L.push(`let wn${r} = select(0u, e${r} - s${r}, e${r} > s${r});`);
  }
  if (v.alibi) L.push(`let sl${r} = SLP[min(${hq}, Hq - 1u)];`);
  if (v.bias) {
    L.push(
      `let bb${r} = b * bsB + (${hq}) * bsH + (${i}) * bsI + u32(kOff) * bsN;`,
    );
  }
  return L.map((x) => ind + x);
}

/**
 * WGSL expression: whether local key `k` is visible to the row whose setup values `row(name)`
 * names (e.g. `(n) => n + "0"`, or a select chain over rows).
 */
export function variantVisible(
  v: KernelVariant,
  k: string,
  row: (name: string) => string,
): string {
  return v.wl ? `(${k} - ${row("s")}) < ${row("wn")}` : `${k} < ${row("e")}`;
}

/**
 * WGSL expression: the score `x` (already scaled) of local key `k` for a row, after the
 * variant's transforms in order — soft-cap (a NaN score stays NaN whatever `tanh` makes of
 * it), ALiBi (one FMA), bias (one load).
 */
export function variantScore(
  v: KernelVariant,
  x: string,
  k: string,
  row: (name: string) => string,
): string {
  let s = x;
  if (v.cap) s = `select(capC * tanh(${s} * capI), ${s}, is_nan(${s}))`;
  if (v.alibi) s = `${s} - ${row("sl")} * f32(abs(${row("P")} - i32(${k})))`;
  if (v.bias) s = `${s} + f32(BIAS[${row("bb")}${v.bk ? ` + ${k}` : ""}])`;
  return s;
}

/**
 * WGSL lines (for a row written whole: its state `(M, Lt, acc)` relative to max `M`) merging
 * the sink state `(z, 1, 0)` of the row's query head: `M`, `Lt` become the new max and total,
 * `az` the factor of the old accumulator.
 */
export function sinkFold(hq: string, M: string, Lt: string, ind: string): string[] {
  return [
    `let zs = SNK[${hq}];`,
    `let mz = max(${M}, zs);`,
    `let az = select(0.0, exp(${M} - mz), ${M} != ninf);`,
    `let lz = ${Lt} * az + exp(zs - mz) * psc;`,
  ].map((x) => ind + x);
}
