/**
 * WGSL of the generic attention kernel, the path where no faster one applies: one thread per
 * query row, K/V staged in workgroup memory a few keys at a time, online softmax per key.
 * Any D, any rows per unit, no subgroups. Correct everywhere, slow.
 *
 * @module
 */
import type { GpuContext } from "../context.ts";
import { LimitError } from "../../../tensor/errors.ts";
import { type Elem, META, segmentLoop, sizes } from "./_wgsl_meta.ts";
import { VISIBLE } from "./_wgsl_visibility.ts";
import { mainBindings } from "./_wgsl_segments.ts";
import {
  kvLoad,
  pagedBindingCount,
  pagedBindings,
  type PagedKernel,
  pagedKey,
  pagedSegment,
} from "./_wgsl_paged.ts";
import {
  byteWord,
  dequantWord,
  quantBindings,
  type QuantKernel,
  quantKey,
  scaleOf,
} from "./_wgsl_quant.ts";
import {
  type KernelVariant,
  sinkFold,
  variantBindings,
  variantInputs,
  variantKey,
  variantRow,
  variantScore,
  variantSizes,
} from "./_wgsl_variant.ts";

/**
 * Largest D whose per-d statements are unrolled at generation time (fast registers, short
 * code); above it they are WGSL loops, so the text — and the compile time — does not grow
 * with D (unrolled, D = 1024 took 241 s to compile on lavapipe and D = 4096 never finished).
 */
export const GENERIC_UNROLL_MAX_D = 256;

/**
 * The statements `line` gives for every d < D: unrolled with literal indices (`i` as `5`,
 * `iu` as `5u`) up to {@link GENERIC_UNROLL_MAX_D}, else one loop over `d` at `indent`.
 */
function eachD(D: number, indent: string, line: (i: string, iu: string) => string): string {
  if (D <= GENERIC_UNROLL_MAX_D) {
    return Array.from({ length: D }, (_, i) => line(`${i}`, `${i}u`)).join("\n");
  }
  const body = line("d", "d").split("\n").map((l) => `  ${l}`).join("\n");
  return `${indent}for (var d = 0u; d < ${D}u; d++) {\n${body}\n${indent}}`;
}

/**
 * Largest head dimension the WebGPU backend accepts: the generic kernel (the fallback for
 * every D) stages at least one key of K and V as f32 in workgroup memory, 8·D bytes, and the
 * kernels keep other workgroup arrays beside it, so D ≤ maxComputeWorkgroupStorageSize / 16
 * (1024 at WebGPU's default 16 KiB, 2048 at 32 KiB, 3072 at an H100's 48 KiB). Half the
 * storage, not all of it: at D = storage / 8 = 6144 an H100 failed pipeline validation
 * (bench/probes/large_d.ts, 2026-12-06), while D = 2048 ran.
 */
export function maxHeadDim(ctx: GpuContext): number {
  return Math.floor(ctx.limits.maxComputeWorkgroupStorageSize / 16);
}

/** Throws {@link LimitError} (at planning, before allocating) when D is over {@link maxHeadDim}. */
export function checkHeadDim(ctx: GpuContext, D: number): void {
  const max = maxHeadDim(ctx);
  if (D > max) {
    throw new LimitError(
      `attention: head dimension ${D} is over the WebGPU backend's maximum ${max} on this ` +
        `device (one key of K and V as f32, 8·D bytes, and the kernels' other workgroup arrays ` +
        `must fit maxComputeWorkgroupStorageSize ${ctx.limits.maxComputeWorkgroupStorageSize}: ` +
        `D ≤ ${ctx.limits.maxComputeWorkgroupStorageSize} / 16); the CPU backend takes any D`,
    );
  }
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
  /** Attention variant features (`_wgsl_variant.ts`); absent or null for plain attention. */
  v?: KernelVariant | null;
  /** Paged K/V (`_wgsl_paged.ts`); absent or null for contiguous K/V. */
  pg?: PagedKernel | null;
  /** Quantized K/V (`_wgsl_quant.ts`; `kv` is then "f32"); absent or null for float K/V. */
  qk?: QuantKernel | null;
}

/** Threads (query rows) per workgroup of the generic kernel. */
export const GENERIC_WG = 64;

/** Pipeline cache key of a generic kernel. */
export function genericKey(c: GenericConfig): string {
  return `attn-generic:D${c.D}:kv${c.qk?.fmt ?? c.kv}:q${c.q}:C${c.C}${variantKey(c.v)}${
    pagedKey(c.pg)
  }${quantKey(c.qk)}`;
}

/** WGSL of the generic kernel: any D, any rows per unit, no subgroups. */
export function genericWgsl(c: GenericConfig): string {
  const { D, C } = c;
  const v = c.v ?? null;
  const pg = c.pg ?? null;
  const qk = c.qk ?? null;
  // Quantized: K/V bind as u32 words, each staged value is its byte decoded times its scale.
  const kvT = qk ? "u32" : c.kv;
  const stage = (t: "K" | "V") =>
    qk
      ? `${scaleOf(qk, pg, t, "key")} * ${
        dequantWord(qk, kvLoad(pg, t, byteWord(pg, "src")))
      }[src & 3u]`
      : `f32(${kvLoad(pg, t, "src")})`;
  const f16 = c.kv === "f16" || c.q === "f16" || v?.bias === "f16";
  // Variant pieces (none for plain attention): the row's visible range and score transforms;
  // keys before a window's start are skipped, not masked.
  const vrow = (n: string) => `${n}v`;
  const rowSetup = v
    ? `${variantRow(v, "v", "i", "ok", "h * group + r / rpb", "      ").join("\n")}
      let e = ev;`
    : `      let e = select(0u, min(k1, visible(len, Sq, i, causal)), ok);`;
  const j0 = v?.wl ? "select(0u, sv - c0, sv > c0)" : "0u";
  const score = v ? `          s = ${variantScore(v, "s", "(c0 + j)", vrow)};\n` : "";
  const norm = v?.sinks
    ? `${sinkFold("h * group + r / rpb", "m", "l", "          ").join("\n")}
          let inv = az / lz;`
    : `          let inv = select(0.0, 1.0 / l, l != 0.0);`;
  const lse = v?.sinks
    ? "select(mz + log(lz * pun), qnan, bad)"
    : "select(select(ninf, m + log(l * pun), l != 0.0), qnan, bad)";
  return `${f16 ? "enable f16;" : ""}
// attention, generic kernel: ${genericKey(c)}
${mainBindings(c.q, kvT)}${variantBindings(v, 7)}${
    pagedBindings(pg, 7 + variantInputs(v).length, kvT, D)
  }${quantBindings(qk, pg, 7 + variantInputs(v).length + pagedBindingCount(pg))}
var<workgroup> ks: array<f32, ${C * D}>;
var<workgroup> vs: array<f32, ${C * D}>;
${VISIBLE}
@compute @workgroup_size(${GENERIC_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= mt[${META.numWorkers}]) { return; }
  ${sizes()}${variantSizes(v)}
  ${
    D <= GENERIC_UNROLL_MAX_D
      ? `var qv: array<f32, ${D}>;`
      : "// q is read from Q: a private copy of a large D compiles slowly"
  }
  var o: array<f32, ${D}>;
${segmentLoop()}${
    pg ? pagedSegment(pg, "    ") : `
    let kvBase = kvRow0 * ${D}u;`
  }
    for (var r0 = 0u; r0 < R; r0 += ${GENERIC_WG}u) {
      let r = r0 + tid;
      let i = qb * rpb + r % rpb;
      let ok = r < R && i < Sq;
      let row = select(0u, (b * Hq + h * group + r / rpb) * Sq + i, ok);
${rowSetup}
      let qb0 = row * ${D}u;
${
    eachD(D, "      ", (d, du) =>
      D <= GENERIC_UNROLL_MAX_D
        ? `      qv[${d}] = scale * f32(Q[qb0 + ${du}]);\n      o[${d}] = 0.0;`
        : `      o[${d}] = 0.0;`)
  }
      var m = ninf;
      var l = 0.0;
      var bad = false;
      for (var c0 = k0; c0 < k1; c0 += ${C}u) {
        workgroupBarrier();
        for (var x = tid; x < ${C * D}u; x += ${GENERIC_WG}u) {
          let key = min(c0 + x / ${D}u, k1 - 1u);
          let src = ${pg ? `kv_at(pbt, Hkv, h, key)` : `kvBase + key * ${D}u`} + x % ${D}u;
          ks[x] = ${stage("K")};
          vs[x] = ${stage("V")};
        }
        workgroupBarrier();
        let cn = select(0u, min(${C}u, e - c0), e > c0);
        for (var j = ${j0}; j < cn; j++) {
          let kb = j * ${D}u;
          var s = 0.0;
${
    D <= GENERIC_UNROLL_MAX_D
      ? eachD(D, "          ", (d, du) => `          s += qv[${d}] * ks[kb + ${du}];`)
      : eachD(D, "          ", (_, du) =>
        `          s += scale * f32(Q[qb0 + ${du}]) * ks[kb + ${du}];`)
  }
${score}          bad = bad || poison_score(s);
          if (s > m) {
            let a = select(0.0, exp(m - s), m != ninf);
            l *= a;
${eachD(D, "            ", (d) => `            o[${d}] *= a;`)}
            m = s;
          }
          let pj = select(0.0, exp(s - m) * psc, s != ninf);
          l += pj;
${eachD(D, "          ", (d, du) => `          o[${d}] += pj * vs[kb + ${du}];`)}
        }
      }
      if (ok) {
        if (part == 0xffffffffu) {
${norm}
${
    eachD(D, "          ", (d, du) =>
      `          O[qb0 + ${du}] = ${c.q}(select(o[${d}] * inv, qnan, bad));`)
  }
          LSE[row] = ${lse};
        } else {
          let pr = part * R + r;
          let pb = partOOff + pr * ${D}u;
${eachD(D, "          ", (d, du) => `          PART[pb + ${du}] = o[${d}];`)}
          PART[pr * 2u] = m;
          PART[pr * 2u + 1u] = select(l, qnan, bad);
        }
      }
    }
  }
}
`;
}

/**
 * Keys the generic kernel stages at a time (its workgroup memory holds K and V as f32).
 * Throws {@link LimitError} where not even one key fits ({@link checkHeadDim}).
 */
export function genericChunk(ctx: GpuContext, D: number): number {
  checkHeadDim(ctx, D);
  const room = Math.min(ctx.limits.maxComputeWorkgroupStorageSize, 16384);
  return Math.max(1, Math.min(32, Math.floor(room / (8 * D))));
}
