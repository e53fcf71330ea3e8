/**
 * Batched matmul kernels (broadcast batch dims, either operand transposed), written against
 * {@link GpuContext}: register-tiled 64×64 tiles for large M and N, 16×16 tiles otherwise, a
 * skinny kernel for M ≤ 8 (decode attention), and split K with an ordered second pass when
 * few tiles would each walk a long K. Every sum runs in a fixed order: deterministic.
 *
 * @module
 */
import type { DataId, TensorInfo } from "../backend.ts";
import type { DType } from "../../tensor/dtype.ts";
import { type Shape, sizeOf } from "../../tensor/shape.ts";
import type { GpuContext } from "./context.ts";
import { broadcastOffsets, broadcastStrides, checkFits, params, WG } from "./_kernels.ts";
import { BUILTINS, declare, declareParams, grid, header, store, WG_INDEX } from "./_wgsl.ts";

/** Threads per side of a matmul workgroup (16×16). */
const T = 16;
/** k-slice staged in workgroup memory per step. */
const BK = 16;

/**
 * Header and bindings of both matmul kernels: a, b, the output (float32 partials when K is
 * split, summed by a second pass) and the params.
 */
function prelude(
  ctx: GpuContext,
  a: TensorInfo,
  b: TensorInfo,
  outDType: DType,
  split: boolean,
): string {
  return `${header(ctx, [a.dtype, b.dtype, outDType])}
${declare(ctx, 0, "xa", a.dtype, "read")}
${declare(ctx, 1, "xb", b.dtype, "read")}
${
    split
      ? "@group(0) @binding(2) var<storage, read_write> y: array<f32>;"
      : declare(ctx, 2, "y", outDType, "read_write")
  }
${declareParams(3)}`;
}

/**
 * Batched matmul with broadcasting batch dims. A workgroup of 16×16 threads computes a
 * (16·R)² output tile, each thread R×R outputs strided by 16 (so neighbouring threads write
 * neighbouring addresses); R = 4 when both M and N exceed 16, else 1. Tiles of a and b for a
 * 16-wide k-slice are staged in workgroup memory (a's rows padded against bank conflicts),
 * loaded so consecutive threads read consecutive addresses whichever way an operand is
 * transposed. K is walked in order: results are deterministic.
 */
export function matmulKernel(
  ctx: GpuContext,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  outShape: Shape,
  outDType: DType,
): DataId {
  const r = outShape.length;
  const M = outShape[r - 2];
  const N = outShape[r - 1];
  const ra = a.shape.length;
  const K = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  checkFits(ctx, "matmul", [a, b], sizeOf(outShape), outDType);
  const out = ctx.alloc(sizeOf(outShape), outDType);
  const batchShape = outShape.slice(0, r - 2);
  const batches = sizeOf(batchShape);
  if (M * N * batches === 0) return out;
  const mats = (s: Shape) => s.slice(0, s.length - 2);
  const sa = broadcastStrides(mats(a.shape), batchShape);
  const sb = broadcastStrides(mats(b.shape), batchShape);
  if (M <= SKINNY_M) {
    skinnyMatmul(ctx, a, b, transposeA, transposeB, [M, N, K], batchShape, sa, sb, out, outDType);
    return out;
  }
  const R = M > T && N > T ? 4 : 1;
  const BM = T * R;
  const tilesM = Math.ceil(M / BM);
  const tilesN = Math.ceil(N / BM);
  const tiles = tilesM * tilesN * batches;
  // Split K when few output tiles would each walk a long K (p·v of decode attention): each
  // split writes float32 partials, summed in split order by a second pass (deterministic).
  const { splits, chunk } = splitK(ctx, tiles, K, BK, batches * M * N);
  const split = splits > 1;
  const aIdx = transposeA ? "k * M + row" : "row * K + k";
  const bIdx = transposeB ? "col * K + k" : "k * N + col";
  // Which index of a staged element varies fastest across threads: the one contiguous in memory.
  const aSplit = transposeA
    ? `let kc = e / ${BM}u; let rr = e % ${BM}u;`
    : `let rr = e / ${BK}u; let kc = e % ${BK}u;`;
  const bSplit = transposeB
    ? `let c = e / ${BK}u; let kr = e % ${BK}u;`
    : `let kr = e / ${BM}u; let c = e % ${BM}u;`;
  // Straight-line code over scalars: drivers keep these in registers, whereas small
  // dynamically indexed arrays may spill to local memory.
  const ij: [number, number][] = [];
  for (let i = 0; i < R; i++) for (let j = 0; j < R; j++) ij.push([i, j]);
  const decls = ij.map(([i, j]) => `  var c${i}_${j} = 0.0;`).join("\n");
  const inner = [
    ...Array.from(
      { length: R },
      (_, i) => `      let a${i} = ta[(ly + ${T * i}u) * ${BK + 1}u + kk];`,
    ),
    ...Array.from({ length: R }, (_, j) => `      let b${j} = tb[kk * ${BM}u + lx + ${T * j}u];`),
    ...ij.map(([i, j]) => `      c${i}_${j} = fma(a${i}, b${j}, c${i}_${j});`),
  ].join("\n");
  const writes = ij.map(([i, j]) =>
    `  if (row0 + ly + ${T * i}u < M && col0 + lx + ${T * j}u < N) {
    y[oo + (row0 + ly + ${T * i}u) * N + col0 + lx + ${T * j}u] = ${
      split ? `c${i}_${j}` : store(ctx, outDType, `c${i}_${j}`)
    };
  }`
  ).join("\n");
  const key = `matmul:${transposeA ? "t" : "n"}${transposeB ? "t" : "n"}:r${R}:${
    split ? "split" : "direct"
  }:${a.dtype}:${b.dtype}:${outDType}`;
  const pipe = ctx.pipeline(key, () =>
    `${prelude(ctx, a, b, outDType, split)}
var<workgroup> ta: array<f32, ${BM * (BK + 1)}>;
var<workgroup> tb: array<f32, ${BK * BM}>;
@compute @workgroup_size(${T}, ${T})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let M = p[0];
  let N = p[1];
  let K = p[2];
  let tilesM = p[4];
  let tilesN = p[5];
  let tiles = tilesM * tilesN * p[3];
  let w0 = ${WG_INDEX};
  if (w0 >= tiles * p[7]) { return; }
  let split = w0 / tiles;
  let w = w0 % tiles;
  let kBeg = split * p[6];
  let kEnd = min(K, kBeg + p[6]);
  let tn = w % tilesN;
  let tm = (w / tilesN) % tilesM;
  let bt = w / (tilesN * tilesM);
  ${broadcastOffsets(8, "bt", ["ma", "mb"])}
  let oa = ma * M * K;
  let ob = mb * K * N;
  let lx = lid.x;
  let ly = lid.y;
  let row0 = tm * ${BM}u;
  let col0 = tn * ${BM}u;
${decls}
  for (var k0 = kBeg; k0 < kEnd; k0 += ${BK}u) {
    for (var e = tid; e < ${BM * BK}u; e += ${T * T}u) {
      ${aSplit}
      let row = row0 + rr;
      let k = k0 + kc;
      var v = 0.0;
      if (row < M && k < kEnd) { v = f32(xa[oa + ${aIdx}]); }
      ta[rr * ${BK + 1}u + kc] = v;
    }
    for (var e = tid; e < ${BM * BK}u; e += ${T * T}u) {
      ${bSplit}
      let col = col0 + c;
      let k = k0 + kr;
      var v = 0.0;
      if (col < N && k < kEnd) { v = f32(xb[ob + ${bIdx}]); }
      tb[kr * ${BM}u + c] = v;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
${inner}
    }
    workgroupBarrier();
  }
  let oo = ${split ? "split * p[3] * M * N + " : ""}bt * M * N;
${writes}
}`);
  launch(ctx, pipe, a, b, out, outDType, splits, batches * M * N, tiles * splits, [
    M,
    N,
    K,
    batches,
    tilesM,
    tilesN,
    chunk,
    splits,
    batchShape.length,
    ...batchShape,
    ...sa,
    ...sb,
  ]);
  return out;
}

/** Rows up to which a matmul takes the skinny kernel (decode: one query row per head). */
const SKINNY_M = 8;

/** Splits of K making about SPLIT_TARGET workgroups of `tiles` tiles, and the chunk length. */
function splitK(
  ctx: GpuContext,
  tiles: number,
  K: number,
  align: number,
  outElements: number,
): { splits: number; chunk: number } {
  let splits = 1;
  if (tiles < SPLIT_TARGET && K >= 2 * SPLIT_MIN_K) {
    splits = Math.min(Math.ceil(SPLIT_TARGET / tiles), Math.floor(K / SPLIT_MIN_K));
    // The float32 partials must fit one binding.
    const fit = Math.floor(ctx.limits.maxStorageBufferBindingSize / (4 * outElements));
    splits = Math.max(1, Math.min(splits, fit));
  }
  const chunk = Math.max(align, Math.ceil(K / splits / align) * align);
  return { splits: Math.max(1, Math.ceil(K / chunk)), chunk };
}

/**
 * Matmul with at most {@link SKINNY_M} rows (q·kᵀ and p·v of decode attention), where a
 * 16-row tile would idle most threads. A workgroup owns a block of NC output columns for all
 * M rows; its 256 threads are NC columns × KL lanes, lane j taking k ≡ j (mod KL) of the
 * workgroup's K range, so every element of b is read once, by consecutive threads at
 * consecutive addresses (NC = 64, KL = 4 when b's rows are contiguous; NC = 16, KL = 16 when
 * b is transposed and its columns are). Lanes are summed in lane order through workgroup
 * memory; split K as in {@link matmulKernel}. Deterministic.
 */
function skinnyMatmul(
  ctx: GpuContext,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  [M, N, K]: [number, number, number],
  batchShape: Shape,
  sa: number[],
  sb: number[],
  out: DataId,
  outDType: DType,
): void {
  const KL = transposeB ? 16 : 4;
  const NC = (T * T) / KL;
  const batches = sizeOf(batchShape);
  const tiles = Math.ceil(N / NC) * batches;
  const { splits, chunk } = splitK(ctx, tiles, K, KL, batches * M * N);
  const split = splits > 1;
  const aIdx = transposeA ? `k * M + ${"${m}"}u` : `${"${m}"}u * K + k`;
  const bIdx = transposeB ? "col * K + k" : "k * N + col";
  const rows = Array.from({ length: M }, (_, m) => m);
  const key = `matmul-skinny:m${M}:${transposeA ? "t" : "n"}${transposeB ? "t" : "n"}:${
    split ? "split" : "direct"
  }:${a.dtype}:${b.dtype}:${outDType}`;
  const pipe = ctx.pipeline(key, () =>
    `${prelude(ctx, a, b, outDType, split)}
var<workgroup> sh: array<f32, ${M * T * T}>;
@compute @workgroup_size(${T * T})
fn main(${BUILTINS}) {
  let M = ${M}u;
  let N = p[1];
  let K = p[2];
  let colTiles = p[4];
  let tiles = colTiles * p[3];
  let w0 = ${WG_INDEX};
  if (w0 >= tiles * p[7]) { return; }
  let split = w0 / tiles;
  let w = w0 % tiles;
  let kBeg = split * p[6];
  let kEnd = min(K, kBeg + p[6]);
  let bt = w / colTiles;
  ${broadcastOffsets(8, "bt", ["ma", "mb"])}
  let oa = ma * M * K;
  let ob = mb * K * N;
  let lane = ${transposeB ? `lid % ${KL}u` : `lid / ${NC}u`};
  let cl = ${transposeB ? `lid / ${KL}u` : `lid % ${NC}u`};
  let col = (w % colTiles) * ${NC}u + cl;
${rows.map((m) => `  var c${m} = 0.0;`).join("\n")}
  if (col < N) {
    for (var k = kBeg + lane; k < kEnd; k += ${KL}u) {
      let bv = f32(xb[ob + ${bIdx}]);
${
      rows.map((m) =>
        `      c${m} = fma(f32(xa[oa + ${aIdx.replaceAll("${m}", String(m))}]), bv, c${m});`
      ).join("\n")
    }
    }
  }
${rows.map((m) => `  sh[${m * T * T}u + lane * ${NC}u + cl] = c${m};`).join("\n")}
  workgroupBarrier();
  if (lid < ${NC}u && (w % colTiles) * ${NC}u + lid < N) {
    let c = (w % colTiles) * ${NC}u + lid;
    let oo = ${split ? "split * p[3] * M * N + " : ""}bt * M * N;
${
      rows.map((m) =>
        `    var s${m} = 0.0;
    for (var j = 0u; j < ${KL}u; j++) { s${m} += sh[${m * T * T}u + j * ${NC}u + lid]; }
    y[oo + ${m}u * N + c] = ${split ? `s${m}` : store(ctx, outDType, `s${m}`)};`
      ).join("\n")
    }
  }
}`);
  launch(ctx, pipe, a, b, out, outDType, splits, batches * M * N, tiles * splits, [
    M,
    N,
    K,
    batches,
    Math.ceil(N / NC),
    0,
    chunk,
    splits,
    batchShape.length,
    ...batchShape,
    ...sa,
    ...sb,
  ]);
}

/** Output tiles below which a matmul splits K. */
const SPLIT_TARGET = 2048;
/** Shortest K range a split gets. */
const SPLIT_MIN_K = 256;

/**
 * Dispatches a matmul pipeline over `workgroups` with its parameter block; with K split, the
 * pipeline writes float32 partials to scratch and {@link sumSplits} adds them in order.
 */
function launch(
  ctx: GpuContext,
  pipe: GPUComputePipeline,
  a: TensorInfo,
  b: TensorInfo,
  out: DataId,
  outDType: DType,
  splits: number,
  total: number,
  workgroups: number,
  dims: number[],
): void {
  const target = splits > 1 ? ctx.scratch(splits * total * 4) : ctx.buffer(out);
  ctx.dispatch(
    pipe,
    [ctx.buffer(a.id), ctx.buffer(b.id), target, params(ctx, dims)],
    grid(ctx, workgroups),
    "matmul",
  );
  if (splits > 1) sumSplits(ctx, target, splits, total, out, outDType);
}

/** `out[i] = Σ_s part[s·total + i]`, in split order. */
function sumSplits(
  ctx: GpuContext,
  part: GPUBuffer,
  splits: number,
  total: number,
  out: DataId,
  outDType: DType,
): void {
  const key = `matmul-splits:${outDType}`;
  const pipe = ctx.pipeline(key, () =>
    `${header(ctx, [outDType])}
@group(0) @binding(0) var<storage, read> part: array<f32>;
${declare(ctx, 1, "y", outDType, "read_write")}
${declareParams(2)}
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let i = ${WG_INDEX} * ${WG}u + lid;
  let total = p[0];
  if (i >= total) { return; }
  var acc = 0.0;
  for (var s = 0u; s < p[1]; s++) { acc += part[s * total + i]; }
  y[i] = ${store(ctx, outDType, "acc")};
}`);
  ctx.dispatch(
    pipe,
    [part, ctx.buffer(out), params(ctx, [total, splits])],
    grid(ctx, Math.ceil(total / WG)),
    "matmul-splits",
  );
}
