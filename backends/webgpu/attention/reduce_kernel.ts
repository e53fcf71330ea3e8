/**
 * WGSL of the reduce kernel, the second pass of an attention call: merges the partial
 * states of cut units in the listed order and writes the units nobody visits (no keys) as the
 * merge identity (out 0, lse −∞). The subgroup kernel's in-kernel merge runs the same fold
 * (`_wgsl_merge.ts`), so the two give the same bits.
 *
 * @module
 */
import { type Elem, META, sizes } from "./_wgsl_meta.ts";
import { NONFINITE } from "./_wgsl_visibility.ts";
import { finishCut } from "./_wgsl_merge.ts";

/** Threads per workgroup of the reduce kernel. */
export const REDUCE_WG = 256;

/** Partials whose loads the reduce kernel issues together. */
const REDUCE_UNROLL = 16;

/** Pipeline cache key of a reduce kernel. */
export function reduceKey(D: number, q: Elem, sinks = false): string {
  return `attn-reduce:D${D}:q${q}${sinks ? ":sinks" : ""}`;
}

/**
 * WGSL of the reduce kernel: one workgroup per (cut or empty unit, chunk of `REDUCE_WG` state
 * elements). Each element folds its partials strictly in the listed order with the pairwise
 * merge; the loads of up to 16 partials are issued before their fold, so a unit cut into many
 * pieces costs a few memory round trips rather than one per piece.
 */
export function reduceWgsl(D: number, q: Elem, sinks = false): string {
  return `${q === "f16" ? "enable f16;" : ""}
// attention, reduce of cut units: D${D} q${q}
${NONFINITE}
@group(0) @binding(0) var<storage, read> mt: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<${q}>;
@group(0) @binding(2) var<storage, read_write> LSE: array<f32>;
@group(0) @binding(3) var<storage, read> PART: array<f32>;${
    // With sinks, each row (a cut unit's or an empty unit's) merges its head's sink once.
    sinks ? "\n@group(0) @binding(4) var<storage, read> SNK: array<f32>;" : ""}
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
${finishCut(D, q, REDUCE_UNROLL, "  ", false, sinks)}
}
`;
}
