/**
 * WGSL pieces of quantized K/V (VARIANTS.md, "Quantized KV"; `AttentionPlan.kvScales`): int8
 * or float8e4m3 bytes packed four to a u32 word (as `la.quantize` stores them), dequantized in
 * registers, with one float32 scale per (b, kv head, key) ("token") or per (b, kv head)
 * ("head"). The kernels apply the scales once per key, not per dimension: K's multiplies the
 * dot product q·k of the stored values, V's the probability that weighs the stored values.
 *
 * The scales bind after the kernel's other inputs (variant inputs, paged bindings): `KS` and
 * `VS` for whole K/V; for paged K/V one scale buffer per page buffer (`KS`, `KS1`…, `VS`,
 * `VS1`…), each `[Pc, Hkv, pageSize]`, addressed like the rows (`kvs_at`, the row index with
 * the buffer in the top bits when there are several).
 *
 * @module
 */
import type { DType } from "../../../tensor/dtype.ts";
import { bufferPicker, type PagedKernel, rowFunction } from "./_wgsl_paged.ts";

/** What a quantized-K/V kernel is compiled for (part of its configuration and key). */
export interface QuantKernel {
  /** Storage format of K and V. */
  readonly fmt: "i8" | "e4m3";
  /** Scale granularity. */
  readonly sc: "token" | "head";
}

/** The kernel's quantized configuration of a K/V dtype and scale granularity (null: float). */
export function quantKernel(
  dtype: DType,
  scales: "token" | "head" | undefined,
): QuantKernel | null {
  if (dtype !== "int8" && dtype !== "float8e4m3") return null;
  return { fmt: dtype === "int8" ? "i8" : "e4m3", sc: scales ?? "token" };
}

/** Pipeline key suffix (empty when not quantized). */
export function quantKey(qk: QuantKernel | null | undefined): string {
  return qk ? `:sc${qk.sc}` : "";
}

/** Storage bindings quantized K/V add: the K and V scales of every (page) buffer. */
export function quantBindingCount(
  qk: QuantKernel | null | undefined,
  pg: PagedKernel | null | undefined,
): number {
  return qk ? 2 * (pg ? pg.nb : 1) : 0;
}

/**
 * WGSL of the scale bindings from binding `first` on, of the decoders (`dq_<fmt>(w)`: the
 * four values of a u32 word as vec4<f32>, byte i in component i) and, for paged K/V, of
 * `kvs_at(pbt, Hkv, h, key)` (the scale index of a key: its row, buffer in the top bits).
 */
export function quantBindings(
  qk: QuantKernel | null | undefined,
  pg: PagedKernel | null | undefined,
  first: number,
): string {
  if (!qk) return "";
  const nb = pg ? pg.nb : 1;
  const out: string[] = [];
  let i = first;
  for (const t of ["KS", "VS"]) {
    for (let c = 0; c < nb; c++) {
      out.push(
        `@group(0) @binding(${i++}) var<storage, read> ${t}${c ? c : ""}: array<f32>;`,
      );
    }
  }
  if (qk.fmt === "i8") {
    // WGSL's packed-4x8 builtin (in wgpu's naga of Deno 2.9.6, no `requires` needed). A
    // decode on float bits (byte ^ 0x80 in the mantissa above 2²³, one subtraction) was no
    // faster on an H100 (bench/NOTES.md, "Session 2026-12-06 (3)").
    out.push(`fn dq_i8(w: u32) -> vec4<f32> { return vec4<f32>(unpack4xI8(w)); }`);
    // The same values through float16 (exact): byte ^ 0x80 as the low bits of a half of
    // 1024 (1152 + byte), bytes 0, 2 and 1, 3 unpacked in pairs, 1152 subtracted. No
    // integer-to-float conversion: 3.5 % faster on multi-head decode (one row a unit), 3–6 %
    // slower with four rows a unit on an H100 (bench/NOTES.md, "Session 2026-12-06 (4)").
    out.push(`fn dq_i8h(w: u32) -> vec4<f32> {
  let a = unpack2x16float(((w & 0x00ff00ffu) ^ 0x00800080u) | 0x64006400u) - vec2<f32>(1152.0);
  let b = unpack2x16float((((w >> 8u) & 0x00ff00ffu) ^ 0x00800080u) | 0x64006400u) -
    vec2<f32>(1152.0);
  return vec4<f32>(a.x, b.x, a.y, b.y);
}`);
  } else {
    // E4M3 → f32 through float16, times 2⁻⁸ (DECODE_SCALE undoes it on the scales): a
    // code's 7 magnitude bits placed at f16 bits 7–13 and its sign at bit 15 make the f16 of
    // the value times 2⁻⁸ (exponent bias 7 against f16's 15; E4M3's subnormals land on f16's).
    // Bytes 0, 2 and 1, 3 are two f16 pairs, unpacked by the hardware. The NaN code (magnitude
    // 0x7f) also sets bit 14 (its magnitude plus one carries into bit 7), making f16 exponent 31
    // with a nonzero mantissa: a NaN, with no select. Half the ALU work of the previous decode
    // (bytes 0,1 and 2,3, ×2⁸ per value, NaN found by a mask and selected; bench/NOTES.md).
    out.push(`fn e4m3_pair(x: u32) -> u32 {
  let m = x & 0x007f007fu;
  return ((m | ((m + 0x00010001u) & 0x00800080u)) << 7u) | ((x << 8u) & 0x80008000u);
}
fn dq_e4m3(w: u32) -> vec4<f32> {
  let a = unpack2x16float(e4m3_pair(w & 0x00ff00ffu));
  let b = unpack2x16float(e4m3_pair((w >> 8u) & 0x00ff00ffu));
  return vec4<f32>(a.x, b.x, a.y, b.y);
}`);
  }
  if (pg) {
    out.push(rowFunction("kvs_at", pg, 1));
    if (nb > 1) { for (const t of ["KS", "VS"]) out.push(bufferPicker(t, nb, "f32")); }
  }
  return "\n" + out.join("\n");
}

/**
 * What the decoders' values are multiplied by to give the stored values: the scales' reads
 * ({@link scaleOf}) carry it, so a value costs no multiply of its own. A power of two, so the
 * products are exact either way.
 */
export function decodeScale(qk: QuantKernel): number {
  return qk.fmt === "i8" ? 1 : 256;
}

/**
 * WGSL of the four values of u32 word `w`, divided by {@link decodeScale} (not yet scaled);
 * int8 `viaHalf` through float16 (`dq_i8h`, the same values).
 */
export function dequantWord(qk: QuantKernel, w: string, viaHalf = false): string {
  return qk.fmt === "i8" ? `dq_i8${viaHalf ? "h" : ""}(${w})` : `dq_e4m3(${w})`;
}

/**
 * WGSL of the scale of `t` ("K" or "V") for key `key` of the segment's unit (b, h): its
 * token's, or the head's (then `key` is unused).
 */
export function scaleOf(
  qk: QuantKernel,
  pg: PagedKernel | null | undefined,
  t: "K" | "V",
  key: string,
): string {
  const buf = `${t}S`;
  const ds = decodeScale(qk);
  const times = (x: string) => ds === 1 ? x : `(${ds.toFixed(1)} * ${x})`;
  if (qk.sc === "head") return times(`${buf}[b * Hkv + h]`);
  if (!pg) return times(`${buf}[kvRow0 + ${key}]`);
  const idx = `kvs_at(pbt, Hkv, h, ${key})`;
  return times(pg.nb > 1 ? `ld${buf}(${idx})` : `${buf}[${idx}]`);
}

/**
 * WGSL of u32 word `x >> 2` of a byte index `x` that may carry a page buffer in its top bits
 * (those stay where they are).
 */
export function byteWord(pg: PagedKernel | null | undefined, x: string): string {
  return pg && pg.nb > 1
    ? `(((${x}) & 0xf0000000u) | (((${x}) & 0x0fffffffu) >> 2u))`
    : `((${x}) >> 2u)`;
}

/** The subgroup kernel's load type of `W` quantized bytes (16: a vec4<u32>, 8, 4). */
export function quantLoadType(W: number): string {
  return W === 16 ? "vec4<u32>" : W === 8 ? "vec2<u32>" : "u32";
}

/**
 * WGSL of the vec4<f32> values of load `a` of `W` quantized bytes (not yet scaled; int8
 * `viaHalf` through float16, see {@link dequantWord}).
 */
export function quantUnpack(qk: QuantKernel, W: number, a: string, viaHalf = false): string[] {
  const words = W === 4 ? [a] : ["x", "y", "z", "w"].slice(0, W / 4).map((x) => `${a}.${x}`);
  return words.map((w) => dequantWord(qk, w, viaHalf));
}

/**
 * Subgroup kernel lines (at `ind`) binding key slot u's scales: `ksc${u}`/`vsc${u}` with no
 * `pre`, the prefetched `${pre}ks${u}`/`${pre}vs${u}` with one (token scales only: head scales
 * are read once a segment, {@link headScales}). `decl` is "let ", "var " or "" (assignment).
 */
export function keyScales(
  qk: QuantKernel | null,
  pg: PagedKernel | null,
  u: number,
  key: string,
  decl: string,
  pre: string,
  ind: string,
): string[] {
  if (!qk) return [];
  if (qk.sc === "head") return pre ? [] : [`${ind}let ksc${u} = ksh;`, `${ind}let vsc${u} = vsh;`];
  const name = (t: string) => `${pre}${t}s${pre ? "" : "c"}${u}`;
  return [
    `${ind}${decl}${name("k")} = ${scaleOf(qk, pg, "K", key)};`,
    `${ind}${decl}${name("v")} = ${scaleOf(qk, pg, "V", key)};`,
  ];
}

/** Subgroup kernel lines: key slot u's scales from the prefetched ones (or the head's). */
export function takenScales(qk: QuantKernel, pg: PagedKernel | null, u: number): string[] {
  if (qk.sc === "head") return keyScales(qk, pg, u, "", "", "", "      ");
  return [`      let ksc${u} = nks${u};`, `      let vsc${u} = nvs${u};`];
}

/** Subgroup kernel lines: the head scales `ksh`, `vsh` of the segment (none for token scales). */
export function headScales(qk: QuantKernel, pg: PagedKernel | null): string[] {
  if (qk.sc !== "head") return [];
  return [
    `    let ksh = ${scaleOf(qk, pg, "K", "")};`,
    `    let vsh = ${scaleOf(qk, pg, "V", "")};`,
  ];
}
