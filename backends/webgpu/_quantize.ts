/**
 * WGSL kernels of `la.quantize` and `la.dequantize` (formats in VARIANTS.md, "Quantized
 * KV"; the CPU kernels in `backends/cpu/_quantize.ts` take the same steps). Nothing here
 * reads back: quantize is two dispatches (the scales, one workgroup a block; then the data,
 * one thread a u32 word of four packed bytes, so no two threads write one word), dequantize
 * one. int8 and float8e4m3 data are bytes packed four to a u32 word, little-endian.
 *
 * Tensors over one binding are stored in parts along N (`_parts.ts`), and x, its data (a
 * quarter or half of x's bytes) and the output of dequantize are each cut where their own
 * size puts the cuts. So every kernel runs once per _piece_: a row interval `[a, b)` within
 * one part of each tensor it touches, with each part's own row offsets. int8 scales
 * `[B, H, N]` are cut where the data is (parts `[B, H, n1 − n0]`, what a per-part attention
 * run binds); float8e4m3's `[B, H]` block spans every part, so x in parts gets a max per
 * part, then a combine (max is exact: the same bits as one pass). A data word that straddles
 * two pieces is written by both dispatches, each keeping the other's bytes.
 *
 * @module
 */
import type { DataId, StoragePart, TensorInfo } from "../backend.ts";
import type { DType, QuantDType } from "../../tensor/dtype.ts";
import type { Shape } from "../../tensor/shape.ts";
import { quantTop } from "../../tensor/quant_format.ts";
import type { GpuContext } from "./context.ts";
import type { PartLayout } from "./_parts.ts";
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

/** What the quantize kernels need of the runtime besides kernels: storage in parts. */
export interface PartsContext extends GpuContext {
  /** The parts of a tensor stored in parts (viewed with `shape`), or null when whole. */
  storageParts(id: DataId, shape: Shape): StoragePart[] | null;
  /** Storage of `shape`, in parts where over one binding. */
  allocShaped(shape: Shape, dtype: DType): DataId;
  /** Storage in the parts of `layout`. */
  allocParts(layout: PartLayout, dtype: DType): DataId;
}

/** The parts along N of a tensor viewed as `shape` (one part `[0, N)` when it is whole). */
function partsOf(ctx: PartsContext, id: DataId, shape: Shape): readonly StoragePart[] {
  return ctx.storageParts(id, shape) ?? [{ id, n0: 0, n1: shape[shape.length - 2] }];
}

/**
 * The row intervals `[a, b)` over which each list stays within one of its parts, in order;
 * `at[l]` is the index of that part in list `l`. Every list covers the same rows.
 */
export function pieces(
  lists: readonly (readonly { n0: number; n1: number }[])[],
): { a: number; b: number; at: number[] }[] {
  const cuts = [...new Set(lists.flatMap((l) => l.flatMap((p) => [p.n0, p.n1])))]
    .sort((x, y) => x - y);
  const out: { a: number; b: number; at: number[] }[] = [];
  for (let i = 0; i + 1 < cuts.length; i++) {
    const [a, b] = [cuts[i], cuts[i + 1]];
    out.push({ a, b, at: lists.map((l) => l.findIndex((p) => p.n0 <= a && a < p.n1)) });
  }
  return out;
}

/** Throws {@link LimitError} (via `checkFits`) where a part of `parts` exceeds a binding. */
function checkParts(
  ctx: GpuContext,
  op: string,
  parts: readonly StoragePart[],
  dtype: DType,
): void {
  checkFits(ctx, op, parts.map((p) => ({ id: p.id, shape: [], dtype })), 0, "float32");
}

/** `(d − x) mod 2³²`: the u32 a kernel adds to get from one part's rows to another's. */
const shift = (d: number, x: number) => (d - x) >>> 0;

/** Quantizes x `[B, H, N, D]`, whole or in parts; see `Backend.quantize` for the result. */
export function quantizeKernel(
  ctx: PartsContext,
  x: TensorInfo,
  dtype: QuantDType,
): { data: DataId; scale: DataId } {
  const [B, H, N, D] = x.shape;
  const outer = B * H;
  const xs = partsOf(ctx, x.id, x.shape);
  checkParts(ctx, "quantize", xs, x.dtype);
  const int8 = dtype === "int8";
  const data = ctx.allocShaped(x.shape, dtype);
  const ds = partsOf(ctx, data, x.shape);
  let scale: DataId | null = null;
  try {
    // Whole data: whole int8 scales, which must fit one binding (4/D of the data's bytes).
    if (int8 && ds.length === 1) checkFits(ctx, "quantize", [], outer * N, "float32");
    // int8 scales are cut where the data is: a per-part attention run binds part c of both.
    scale = int8 && ds.length > 1
      ? ctx.allocParts({ outer, rows: N, row: 1, ranges: ds.map((p) => [p.n0, p.n1]) }, "float32")
      : ctx.alloc(int8 ? outer * N : outer, "float32");
    if (outer * N * D === 0) return { data, scale };
    const ss = int8 ? partsOf(ctx, scale, [B, H, N, 1]) : [{ id: scale, n0: 0, n1: N }];
    if (int8) {
      for (const { a, b, at: [xi, si] } of pieces([xs, ss])) {
        const [xp, sp] = [xs[xi], ss[si]];
        scaleDispatch(ctx, x.dtype, dtype, false, xp.id, ctx.buffer(sp.id), [
          D,
          outer * (b - a),
          b - a,
          xp.n1 - xp.n0,
          a - xp.n0,
          sp.n1 - sp.n0,
          a - sp.n0,
          0,
        ]);
      }
    } else if (xs.length === 1) {
      scaleDispatch(ctx, x.dtype, dtype, false, xs[0].id, ctx.buffer(scale), [
        N * D,
        outer,
        1,
        1,
        0,
        1,
        0,
        0,
      ]);
    } else {
      headScales(ctx, x.dtype, xs, scale, outer, D);
    }
    for (const { a, b, at: [xi, di] } of pieces([xs, ds])) {
      const [xp, dp] = [xs[xi], ds[di]];
      // int8: part di of the scales (cut as the data); float8e4m3: the whole [B, H].
      const sc = int8 ? ss[di].id : scale;
      packDispatch(ctx, x.dtype, dtype, xp, dp, sc, a, b, outer, D);
    }
    return { data, scale };
  } catch (e) {
    ctx.release(data);
    if (scale) ctx.release(scale);
    throw e;
  }
}

/**
 * One scale pass: workgroup t of `p[1]` takes block `(o, r) = (t / p[2], t % p[2])` of
 * `p[0]` elements at x `((o·p[3]) + p[4] + r)·p[0]` and writes its scale (or, `partial`, its
 * max and non-finite flag as u32 pairs) at `p[7] + o·p[5] + p[6] + r`.
 */
function scaleDispatch(
  ctx: GpuContext,
  xDtype: DType,
  dtype: QuantDType,
  partial: boolean,
  x: DataId,
  out: GPUBuffer,
  p: number[],
): void {
  const top = quantTop(dtype).toFixed(1);
  const pipe = ctx.pipeline(
    `quantize-scale:${xDtype}:${dtype}:${partial}`,
    () =>
      `${header(ctx, [xDtype])}
${declare(ctx, 0, "x", xDtype, "read")}
@group(0) @binding(1) var<storage, read_write> scale: array<${partial ? "u32" : "f32"}>;
${declareParams(2)}
${CODECS}
var<workgroup> amax: array<f32, ${WG}>;
var<workgroup> bad: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let t = ${WG_INDEX};
  if (t >= p[1]) { return; }
  let block = p[0];
  let o = t / p[2];
  let r = t % p[2];
  let base = (o * p[3] + p[4] + r) * block;
  var m = 0.0;
  var nonfinite = 0u;
  for (var i = lid; i < block; i += ${WG}u) {
    let v = f32(x[base + i]);
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
  let at = p[7] + o * p[5] + p[6] + r;
  ${
        partial
          ? "if (lid == 0u) { scale[2u * at] = bitcast<u32>(amax[0]); scale[2u * at + 1u] = bad[0]; }"
          : `if (lid == 0u) { scale[at] = select(amax[0] / ${top}, nan(), bad[0] != 0u); }`
      }
}`,
  );
  // Every workgroup reaches the barriers: the early return above is per workgroup.
  ctx.dispatch(pipe, [ctx.buffer(x), out, params(ctx, p)], grid(ctx, p[1]), "quantize scales");
}

/**
 * float8e4m3 scales of x in parts: each (batch, head) block spans every part, so each part's
 * max first, then one pass over the parts' maxes (max is exact: the bits of one pass).
 */
function headScales(
  ctx: GpuContext,
  xDtype: DType,
  xs: readonly StoragePart[],
  scale: DataId,
  outer: number,
  D: number,
): void {
  const partial = ctx.scratch(xs.length * outer * 8);
  xs.forEach((xp, c) => {
    const L = (xp.n1 - xp.n0) * D;
    scaleDispatch(ctx, xDtype, "float8e4m3", true, xp.id, partial, [
      L,
      outer,
      1,
      1,
      0,
      1,
      0,
      c * outer,
    ]);
  });
  const top = quantTop("float8e4m3").toFixed(1);
  const pipe = ctx.pipeline("quantize-scale-combine", () =>
    `${header(ctx, [])}
@group(0) @binding(0) var<storage, read> part: array<u32>;
@group(0) @binding(1) var<storage, read_write> scale: array<f32>;
${declareParams(2)}
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let o = ${WG_INDEX} * ${WG}u + lid;
  if (o >= p[0]) { return; }
  var m = 0.0;
  var bad = 0u;
  for (var c = 0u; c < p[1]; c++) {
    let k = 2u * (c * p[0] + o);
    m = max(m, bitcast<f32>(part[k]));
    bad = bad | part[k + 1u];
  }
  scale[o] = select(m / ${top}, nan(), bad != 0u);
}`);
  ctx.dispatch(
    pipe,
    [partial, ctx.buffer(scale), params(ctx, [outer, xs.length])],
    grid(ctx, Math.ceil(outer / WG)),
    "quantize scales (combine)",
  );
}

/**
 * Packs rows `[a, b)` of x part `xp` into data part `dp`: one thread a u32 word of the data
 * part; a word only partly in the rows keeps its other bytes (another piece writes them).
 */
function packDispatch(
  ctx: GpuContext,
  xDtype: DType,
  dtype: QuantDType,
  xp: StoragePart,
  dp: StoragePart,
  scale: DataId,
  a: number,
  b: number,
  outer: number,
  D: number,
): void {
  const dRows = dp.n1 - dp.n0;
  const elems = outer * dRows * D;
  const words = Math.ceil(elems / 4);
  const int8 = dtype === "int8";
  const pipe = ctx.pipeline(`quantize-pack:${xDtype}:${dtype}`, () =>
    `${header(ctx, [xDtype])}
${declare(ctx, 0, "x", xDtype, "read")}
@group(0) @binding(1) var<storage, read> scale: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<u32>;
${declareParams(3)}
${CODECS}
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let w = ${WG_INDEX} * ${WG}u + lid;
  if (w >= p[1]) { return; }
  let slab = p[3] * p[2];
  var word = 0u;
  var mask = 0u;
  for (var j = 0u; j < 4u; j++) {
    let i = w * 4u + j;
    // Bytes past the data: zero, written by the piece that ends the part.
    if (i >= p[0]) { if (p[8] != 0u) { mask |= 0xffu << (8u * j); } continue; }
    let o = i / slab;
    let rem = i - o * slab;
    let rr = rem / p[2];
    if (rr < p[4] || rr >= p[5]) { continue; }
    mask |= 0xffu << (8u * j);
    let s = scale[${int8 ? "o * p[3] + rr" : "o"}];
    if (usable_scale(s)) {
      let xi = (o * p[6] + rr + p[7]) * p[2] + rem - rr * p[2];
      word |= enc_${int8 ? "int8" : "e4m3"}(f32(x[xi]) / s) << (8u * j);
    }
  }
  if (mask == 0xffffffffu) { q[w] = word; } else if (mask != 0u) { q[w] = (q[w] & ~mask) | word; }
}`);
  const p = [
    elems,
    words,
    D,
    dRows,
    a - dp.n0,
    b - dp.n0,
    xp.n1 - xp.n0,
    shift(dp.n0, xp.n0),
    b === dp.n1 ? 1 : 0,
  ];
  ctx.dispatch(
    pipe,
    [ctx.buffer(xp.id), ctx.buffer(scale), ctx.buffer(dp.id), params(ctx, p)],
    grid(ctx, Math.ceil(words / WG)),
    "quantize pack",
  );
}

/**
 * float32 `scale · value` of every element of quantized `data` (whole or in parts; int8
 * scales whole or cut as the data), in parts where over one binding.
 */
export function dequantizeKernel(ctx: PartsContext, data: TensorInfo, scale: TensorInfo): DataId {
  const dtype = data.dtype as QuantDType;
  const [B, H, N, D] = data.shape;
  const outer = B * H;
  const int8 = dtype === "int8";
  const ds = partsOf(ctx, data.id, data.shape);
  const ss = int8 ? partsOf(ctx, scale.id, [B, H, N, 1]) : [{ id: scale.id, n0: 0, n1: N }];
  checkParts(ctx, "dequantize", ds, dtype);
  checkParts(ctx, "dequantize", ss, "float32");
  const out = ctx.allocShaped(data.shape, "float32");
  if (outer * N * D === 0) return out;
  try {
    const os = partsOf(ctx, out, data.shape);
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
  let slab = p[2] * p[1];
  let o = i / slab;
  let rem = i - o * slab;
  let rr = rem / p[1];
  if (rr < p[3] || rr >= p[4]) { return; }
  let di = (o * p[5] + rr + p[6]) * p[1] + rem - rr * p[1];
  let byte = (q[di >> 2u] >> (8u * (di & 3u))) & 0xffu;
  y[i] = scale[${int8 ? "o * p[7] + rr + p[8]" : "o"}] * dec_${int8 ? "int8" : "e4m3"}(byte);
}`);
    for (const { a, b, at: [di, si, oi] } of pieces([ds, ss, os])) {
      const [dp, sp, op] = [ds[di], ss[si], os[oi]];
      const oRows = op.n1 - op.n0;
      const elems = outer * oRows * D;
      const p = [
        elems,
        D,
        oRows,
        a - op.n0,
        b - op.n0,
        dp.n1 - dp.n0,
        shift(op.n0, dp.n0),
        sp.n1 - sp.n0,
        shift(op.n0, sp.n0),
      ];
      ctx.dispatch(
        pipe,
        [ctx.buffer(dp.id), ctx.buffer(sp.id), ctx.buffer(op.id), params(ctx, p)],
        grid(ctx, Math.ceil(elems / WG)),
        "dequantize",
      );
    }
    return out;
  } catch (e) {
    ctx.release(out);
    throw e;
  }
}
