/**
 * Small WGSL building blocks shared by the op kernels: storage declarations per dtype, the
 * float16 store conversion, and 2-D dispatch grids for counts past the 65,535 limit.
 *
 * Arithmetic is always f32. A float16 tensor is either an `array<f16>` (when `shader-f16` is
 * granted) or an `array<f32>` of values already rounded to f16; kernels writing float16 round
 * in the shader so both layouts hold the same values.
 *
 * @module
 */
import type { DType } from "../../tensor/dtype.ts";
import { LimitError } from "../../tensor/errors.ts";
import type { GpuContext } from "./context.ts";

/** `enable f16;` when any of the dtypes is stored as f16 on this device. */
export function header(ctx: GpuContext, dtypes: readonly DType[]): string {
  const f16 = dtypes.some((d) => ctx.wgslType(d) === "f16");
  return (f16 ? "enable f16;\n" : "") + PRELUDE + (f16 ? PRELUDE_F16 : "");
}

// Literal infinities are WGSL shader-creation errors; bit patterns are not.
const PRELUDE = `
fn neg_inf() -> f32 { return bitcast<f32>(0xff800000u); }
fn nan() -> f32 { return bitcast<f32>(0x7fc00000u); }
// A bit test: a compiler may fold v != v away.
fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
// max that propagates NaN (WGSL's max may return either operand).
fn max_nan(a: f32, b: f32) -> f32 { return select(max(a, b), nan(), is_nan(a) || is_nan(b)); }
// Rounds to the nearest float16 value (ties to even) in integer arithmetic: a round trip
// through pack2x16float is folded away by some drivers (NVIDIA), leaving v unrounded.
fn round_f16(v: f32) -> f32 {
  let u = bitcast<u32>(v);
  let sign = u & 0x80000000u;
  let a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) { return v; }
  if (a >= 0x477ff000u) { return bitcast<f32>(sign | 0x7f800000u); }
  if (a < 0x38800000u) {
    // Subnormal halves are multiples of 2^-24; the scaling is exact and round() ties to even.
    return round(v * 16777216.0) * 5.9604644775390625e-8;
  }
  let r = (a + 0xfffu + ((a >> 13u) & 1u)) & 0xffffe000u;
  return bitcast<f32>(sign | r);
}
`;

// round_f16 first: it makes overflow an exact ±inf, so the f16 conversion is exact.
const PRELUDE_F16 = `
fn to_f16(v: f32) -> f16 { return f16(round_f16(v)); }
`;

/** A storage array declaration at `binding` of `dtype` elements. */
export function declare(
  ctx: GpuContext,
  binding: number,
  name: string,
  dtype: DType,
  access: "read" | "read_write",
): string {
  return `@group(0) @binding(${binding}) var<storage, ${access}> ${name}: array<${
    ctx.wgslType(dtype)
  }>;`;
}

/** The u32 parameter array at `binding`. */
export function declareParams(binding: number): string {
  return `@group(0) @binding(${binding}) var<storage, read> p: array<u32>;`;
}

/** A WGSL expression converting the f32 expression `v` for storage as `dtype`. */
export function store(ctx: GpuContext, dtype: DType, v: string): string {
  if (ctx.wgslType(dtype) === "f16") return `to_f16(${v})`;
  return dtype === "float16" ? `round_f16(${v})` : v;
}

/** WGSL built-in parameters of a kernel entry point using {@link grid}. */
export const BUILTINS = "@builtin(workgroup_id) wid: vec3<u32>, " +
  "@builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32";

/** Linear workgroup index under a {@link grid} dispatch. */
export const WG_INDEX = "(wid.y * nwg.x + wid.x)";

/**
 * Dispatch size for `count` workgroups: 1-D up to the per-dimension limit, else 2-D (shaders
 * rebuild the linear index with {@link WG_INDEX} and skip the tail past `count`).
 */
export function grid(ctx: GpuContext, count: number): [number, number] {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (count <= max) return [count, 1];
  const y = Math.ceil(count / max);
  if (y > max) {
    throw new LimitError(
      `webgpu: ${count} workgroups exceed maxComputeWorkgroupsPerDimension² (${max}²)`,
    );
  }
  return [Math.ceil(count / y), y];
}
