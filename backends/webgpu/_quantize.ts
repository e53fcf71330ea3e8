/**
 * WGSL kernels of `la.quantize` and `la.dequantize` (formats in VARIANTS.md, "Quantized
 * KV"; the CPU kernels in `backends/cpu/_quantize.ts` take the same steps). Nothing here
 * reads back: quantize is two dispatches (the scales, one workgroup a block; then the data,
 * one thread a u32 word of four packed bytes, so no two threads write one word), dequantize
 * one. int8 and float8e4m3 data are bytes packed four to a u32 word, little-endian.
 *
 * @module
 */
import type { DataId, TensorInfo } from "../backend.ts";
import type { QuantDType } from "../../tensor/dtype.ts";
import { sizeOf } from "../../tensor/shape.ts";
import { quantBlock, quantTop, scaleShape } from "../../tensor/quant_format.ts";
import type { GpuContext } from "./context.ts";
import { checkFits, params, WG } from "./_kernels.ts";
import { BUILTINS, declare, declareParams, grid, header, WG_INDEX } from "./_wgsl.ts";

// Valid scale: positive and finite (a bit test: compilers may assume floats are never NaN).
// E4M3 encoding: the steps of encodeE4M3 in tensor/float8.ts, on the f32 bits.
const CODECS = `
fn finite(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) < 0x7f800000u; }
fn usable_scale(s: f32) -> bool { let b = bitcast<u32>(s); return b != 0u && b < 0x7f800000u; }
fn enc_int8(t: f32) -> u32 { return bitcast<u32>(i32(clamp(round(t), -127.0, 127.0))) & 0xffu; }
fn enc_e4m3(t: f32) -> u32 {
  let bits = bitcast<u32>(t);
  let sign = (bits >> 24u) & 0x80u;
  let a = bits & 0x7fffffffu;
  if (a > 0x7f800000u) { return 0x7fu; }
  if (a >= 0x43e00000u) { return sign | 0x7eu; }
  if (a < 0x3c800000u) { return sign | u32(round(bitcast<f32>(a) * 512.0)); }
  let r = (a + 0x7ffffu + ((a >> 20u) & 1u)) >> 20u;
  return sign | min(r - 960u, 0x7eu);
}
fn dec_int8(b: u32) -> f32 { return f32(bitcast<i32>(b << 24u) >> 24u); }
fn dec_e4m3(c: u32) -> f32 {
  let e = (c >> 3u) & 15u;
  let m = c & 7u;
  var v = bitcast<f32>(((e + 120u) << 23u) | (m << 20u));
  if (e == 0u) { v = f32(m) * 0.001953125; }
  if (e == 15u && m == 7u) { v = nan(); }
  return select(v, -v, (c & 0x80u) != 0u);
}
`;

/** Quantizes x `[B, H, N, D]`; see `Backend.quantize` for the result. */
export function quantizeKernel(
  ctx: GpuContext,
  x: TensorInfo,
  dtype: QuantDType,
): { data: DataId; scale: DataId } {
  const n = sizeOf(x.shape);
  const block = quantBlock(dtype, x.shape);
  const blocks = sizeOf(scaleShape(dtype, x.shape));
  checkFits(ctx, "quantize", [x], n, "float32");
  const data = ctx.alloc(n, dtype);
  let scale: DataId;
  try {
    scale = ctx.alloc(blocks, "float32");
  } catch (e) {
    ctx.release(data);
    throw e;
  }
  if (blocks === 0) return { data, scale };
  const top = quantTop(dtype).toFixed(1);
  const scales = ctx.pipeline(`quantize-scale:${x.dtype}:${dtype}`, () =>
    `${header(ctx, [x.dtype])}
${declare(ctx, 0, "x", x.dtype, "read")}
@group(0) @binding(1) var<storage, read_write> scale: array<f32>;
${declareParams(2)}
${CODECS}
var<workgroup> amax: array<f32, ${WG}>;
var<workgroup> bad: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let b = ${WG_INDEX};
  if (b >= p[1]) { return; }
  let block = p[0];
  var m = 0.0;
  var nonfinite = 0u;
  for (var i = lid; i < block; i += ${WG}u) {
    let v = f32(x[b * block + i]);
    if (!finite(v)) { nonfinite = 1u; } else { m = max(m, abs(v)); }
  }
  amax[lid] = m;
  bad[lid] = nonfinite;
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) {
      amax[lid] = max(amax[lid], amax[lid + s]);
      bad[lid] = bad[lid] | bad[lid + s];
    }
  }
  if (lid == 0u) { scale[b] = select(amax[0] / ${top}, nan(), bad[0] != 0u); }
}`);
  // Every workgroup reaches the barriers: the early return above is per workgroup.
  ctx.dispatch(
    scales,
    [ctx.buffer(x.id), ctx.buffer(scale), params(ctx, [block, blocks])],
    grid(ctx, blocks),
    "quantize scales",
  );
  const words = Math.ceil(n / 4);
  if (words === 0) return { data, scale };
  const pack = ctx.pipeline(`quantize-pack:${x.dtype}:${dtype}`, () =>
    `${header(ctx, [x.dtype])}
${declare(ctx, 0, "x", x.dtype, "read")}
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<u32>;
${declareParams(3)}
${CODECS}
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let w = ${WG_INDEX} * ${WG}u + lid;
  if (w >= p[1]) { return; }
  var word = 0u;
  for (var j = 0u; j < 4u; j++) {
    let i = w * 4u + j;
    if (i >= p[0]) { break; }
    let s = scale[i / p[2]];
    if (usable_scale(s)) {
      word |= enc_${dtype === "int8" ? "int8" : "e4m3"}(f32(x[i]) / s) << (8u * j);
    }
  }
  q[w] = word;
}`);
  ctx.dispatch(
    pack,
    [ctx.buffer(x.id), ctx.buffer(scale), ctx.buffer(data), params(ctx, [n, words, block])],
    grid(ctx, Math.ceil(words / WG)),
    "quantize pack",
  );
  return { data, scale };
}

/** float32 `scale · value` of every element of quantized `data`. */
export function dequantizeKernel(ctx: GpuContext, data: TensorInfo, scale: TensorInfo): DataId {
  const dtype = data.dtype as QuantDType;
  const n = sizeOf(data.shape);
  checkFits(ctx, "dequantize", [data, scale], n, "float32");
  const out = ctx.alloc(n, "float32");
  if (n === 0) return out;
  const pipe = ctx.pipeline(`dequantize:${dtype}`, () =>
    `${header(ctx, [])}
@group(0) @binding(0) var<storage, read> q: array<u32>;
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${declareParams(3)}
${CODECS}
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let i = ${WG_INDEX} * ${WG}u + lid;
  if (i >= p[0]) { return; }
  let byte = (q[i >> 2u] >> (8u * (i & 3u))) & 0xffu;
  y[i] = scale[i / p[1]] * dec_${dtype === "int8" ? "int8" : "e4m3"}(byte);
}`);
  ctx.dispatch(
    pipe,
    [
      ctx.buffer(data.id),
      ctx.buffer(scale.id),
      ctx.buffer(out),
      params(ctx, [n, quantBlock(dtype, data.shape)]),
    ],
    grid(ctx, Math.ceil(n / WG)),
    "dequantize",
  );
  return out;
}
