/**
 * WGSL kernels of the elementary ops (everything but attention), written against
 * {@link GpuContext} only. Shapes travel in a small `array<u32>` parameter buffer, so one
 * pipeline serves every shape; a pipeline key names only what the WGSL text depends on (op,
 * dtypes, transposes, layout variant).
 *
 * @module
 */
import type { BinaryOp, DataId, ReduceOp, TensorInfo, UnaryOp } from "../backend.ts";
import type { DType } from "../../tensor/dtype.ts";
import { type Shape, sizeOf, stridesOf } from "../../tensor/shape.ts";
import type { GpuContext } from "./context.ts";
import { LimitError } from "../../tensor/errors.ts";
import { BUILTINS, declare, declareParams, grid, header, store, WG_INDEX } from "./_wgsl.ts";

/** Threads per workgroup of the elementwise kernels. */
const WG = 256;
/** Elements per thread of the elementwise kernels (more bytes in flight per thread). */
const PER = 4;
/** Elements per workgroup of the elementwise kernels. */
const WG_ELEMS = WG * PER;

/**
 * Entry point of the elementwise kernels: thread `lid` of workgroup `w` takes elements
 * `w·WG·PER + lid + WG·j` (each load instruction stays coalesced), calling `elem(i)`.
 */
const ELEMENTWISE_MAIN = `@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  let base = ${WG_INDEX} * ${WG_ELEMS}u + lid;
  for (var j = 0u; j < ${PER}u; j++) {
    let i = base + j * ${WG}u;
    if (i >= p[0]) { return; }
    elem(i);
  }
}`;

/** Threads per row of the row reductions: more for long rows (few rows, e.g. decode). */
const rowThreads = (n: number) => (n >= 2048 ? 256 : 64);

/**
 * Throws {@link LimitError} before anything is allocated when an input or the output would
 * not fit one storage binding (the dispatch would fail after the output was made).
 */
function checkFits(
  ctx: GpuContext,
  op: string,
  inputs: readonly TensorInfo[],
  outElements: number,
  outDType: DType,
): void {
  const max = ctx.limits.maxStorageBufferBindingSize;
  const outBytes = outElements * (ctx.wgslType(outDType) === "f16" ? 2 : 4);
  for (
    const [what, bytes] of [
      ...inputs.map((t, i) => [`input ${i}`, ctx.byteLength(t.id)] as const),
      ["output", outBytes] as const,
    ]
  ) {
    if (bytes > max) {
      throw new LimitError(
        `webgpu ${op}: ${what} needs ${bytes} bytes in one binding, but ` +
          `maxStorageBufferBindingSize is ${max}`,
      );
    }
  }
}

function params(ctx: GpuContext, values: readonly number[]): GPUBuffer {
  return ctx.scratchFrom(Uint32Array.from(values));
}

const UNARY: Record<UnaryOp | "copy", string> = {
  exp: "exp(v)",
  neg: "-v",
  log: "log(v)",
  copy: "v",
};

/** Elementwise unary op (`copy` with another output dtype is a cast). */
export function unaryKernel(
  ctx: GpuContext,
  op: UnaryOp | "copy",
  x: TensorInfo,
  outDType: DType = x.dtype,
): DataId {
  const n = sizeOf(x.shape);
  checkFits(ctx, op, [x], n, outDType);
  const out = ctx.alloc(n, outDType);
  if (n === 0) return out;
  const key = `unary:${op}:${x.dtype}:${outDType}`;
  const pipe = ctx.pipeline(key, () =>
    `${header(ctx, [x.dtype, outDType])}
${declare(ctx, 0, "x", x.dtype, "read")}
${declare(ctx, 1, "y", outDType, "read_write")}
${declareParams(2)}
${ELEMENTWISE_MAIN}
fn elem(i: u32) {
  let v = f32(x[i]);
  y[i] = ${store(ctx, outDType, UNARY[op])};
}`);
  ctx.dispatch(
    pipe,
    [ctx.buffer(x.id), ctx.buffer(out), params(ctx, [n])],
    grid(ctx, Math.ceil(n / WG_ELEMS)),
    op === "copy" ? "cast" : op,
  );
  return out;
}

const BINARY: Record<BinaryOp, string> = {
  add: "a + b",
  sub: "a - b",
  mul: "a * b",
  div: "a / b",
  max: "max_nan(a, b)",
};

/** Strides of `shape` broadcast to `outShape` (0 along broadcast dims). */
function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const s = stridesOf(shape);
  const off = outShape.length - shape.length;
  return outShape.map((_, d) => {
    const i = d - off;
    return i < 0 || shape[i] === 1 ? 0 : s[i];
  });
}

const same = (a: Shape, b: Shape) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Elementwise binary op with NumPy broadcasting to `outShape`. */
export function binaryKernel(
  ctx: GpuContext,
  op: BinaryOp,
  a: TensorInfo,
  b: TensorInfo,
  outShape: Shape,
  outDType: DType,
): DataId {
  const n = sizeOf(outShape);
  checkFits(ctx, op, [a, b], n, outDType);
  const out = ctx.alloc(n, outDType);
  if (n === 0) return out;
  // Equal shapes need no index arithmetic; everything else decodes the output index.
  const flat = same(a.shape, outShape) && same(b.shape, outShape);
  const key = `binary:${op}:${flat ? "flat" : "bcast"}:${a.dtype}:${b.dtype}:${outDType}`;
  const index = flat ? "let ia = i; let ib = i;" : `
  let r = p[1];
  var rem = i;
  var ia = 0u;
  var ib = 0u;
  for (var d = r; d > 0u; d--) {
    let dim = p[1u + d];
    let c = rem % dim;
    rem = rem / dim;
    ia += c * p[1u + r + d];
    ib += c * p[1u + 2u * r + d];
  }`;
  const pipe = ctx.pipeline(key, () =>
    `${header(ctx, [a.dtype, b.dtype, outDType])}
${declare(ctx, 0, "xa", a.dtype, "read")}
${declare(ctx, 1, "xb", b.dtype, "read")}
${declare(ctx, 2, "y", outDType, "read_write")}
${declareParams(3)}
${ELEMENTWISE_MAIN}
fn elem(i: u32) {
  ${index}
  let a = f32(xa[ia]);
  let b = f32(xb[ib]);
  y[i] = ${store(ctx, outDType, BINARY[op])};
}`);
  const ps = flat ? [n] : [
    n,
    outShape.length,
    ...outShape,
    ...broadcastStrides(a.shape, outShape),
    ...broadcastStrides(b.shape, outShape),
  ];
  ctx.dispatch(
    pipe,
    [ctx.buffer(a.id), ctx.buffer(b.id), ctx.buffer(out), params(ctx, ps)],
    grid(ctx, Math.ceil(n / WG_ELEMS)),
    op,
  );
  return out;
}

/**
 * Elementwise select with broadcasting: `cond ≠ 0 ? a : b`. The condition is a bit test
 * (anything but ±0 is true, NaN included) because a compiler may fold float comparisons
 * with NaN; the chosen operand is copied, never combined with the other, so a NaN or ∞ in
 * the other one cannot leak.
 */
export function whereKernel(
  ctx: GpuContext,
  cond: TensorInfo,
  a: TensorInfo,
  b: TensorInfo,
  outShape: Shape,
  outDType: DType,
): DataId {
  const n = sizeOf(outShape);
  checkFits(ctx, "where", [cond, a, b], n, outDType);
  const out = ctx.alloc(n, outDType);
  if (n === 0) return out;
  const flat = [cond, a, b].every((t) => same(t.shape, outShape));
  const key = `where:${flat ? "flat" : "bcast"}:${cond.dtype}:${a.dtype}:${b.dtype}:${outDType}`;
  const index = flat ? "let ic = i; let ia = i; let ib = i;" : `
  let r = p[1];
  var rem = i;
  var ic = 0u;
  var ia = 0u;
  var ib = 0u;
  for (var d = r; d > 0u; d--) {
    let dim = p[1u + d];
    let c = rem % dim;
    rem = rem / dim;
    ic += c * p[1u + r + d];
    ia += c * p[1u + 2u * r + d];
    ib += c * p[1u + 3u * r + d];
  }`;
  const pipe = ctx.pipeline(key, () =>
    `${header(ctx, [cond.dtype, a.dtype, b.dtype, outDType])}
${declare(ctx, 0, "xc", cond.dtype, "read")}
${declare(ctx, 1, "xa", a.dtype, "read")}
${declare(ctx, 2, "xb", b.dtype, "read")}
${declare(ctx, 3, "y", outDType, "read_write")}
${declareParams(4)}
${ELEMENTWISE_MAIN}
fn elem(i: u32) {
  ${index}
  let c = (bitcast<u32>(f32(xc[ic])) & 0x7fffffffu) != 0u;
  var v: f32;
  if (c) { v = f32(xa[ia]); } else { v = f32(xb[ib]); }
  y[i] = ${store(ctx, outDType, "v")};
}`);
  const ps = flat ? [n] : [
    n,
    outShape.length,
    ...outShape,
    ...broadcastStrides(cond.shape, outShape),
    ...broadcastStrides(a.shape, outShape),
    ...broadcastStrides(b.shape, outShape),
  ];
  ctx.dispatch(
    pipe,
    [ctx.buffer(cond.id), ctx.buffer(a.id), ctx.buffer(b.id), ctx.buffer(out), params(ctx, ps)],
    grid(ctx, Math.ceil(n / WG_ELEMS)),
    "where",
  );
  return out;
}

/** `[outer, n, inner]` view of a shape around `axis`. */
function around(shape: Shape, axis: number): [number, number, number] {
  return [sizeOf(shape.slice(0, axis)), shape[axis], sizeOf(shape.slice(axis + 1))];
}

const INIT: Record<ReduceOp, string> = { sum: "0.0", max: "neg_inf()" };
const COMBINE: Record<ReduceOp, (a: string, b: string) => string> = {
  sum: (a, b) => `${a} + ${b}`,
  max: (a, b) => `max_nan(${a}, ${b})`,
};

/**
 * Sum or max along `axis`. The last axis gets a workgroup per row (threads take strided
 * elements, then a fixed tree); other axes a thread per output walking its column, which
 * keeps neighbouring threads on neighbouring addresses. Both orders are fixed: deterministic.
 */
export function reduceKernel(ctx: GpuContext, op: ReduceOp, x: TensorInfo, axis: number): DataId {
  const [outer, n, inner] = around(x.shape, axis);
  const rows = outer * inner;
  checkFits(ctx, op, [x], rows, x.dtype);
  const out = ctx.alloc(rows, x.dtype);
  if (rows === 0) return out;
  const rowwise = inner === 1;
  const RW = rowThreads(n);
  const key = `reduce:${op}:${rowwise ? `row${RW}` : "col"}:${x.dtype}`;
  const c = COMBINE[op];
  const body = rowwise
    ? `
  let row = ${WG_INDEX};
  if (row >= p[0]) { return; }
  let n = p[1];
  var acc = ${INIT[op]};
  for (var j = lid; j < n; j += ${RW}u) { acc = ${c("acc", "f32(x[row * n + j])")}; }
  sh[lid] = acc;
  workgroupBarrier();
  for (var s = ${RW / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { sh[lid] = ${c("sh[lid]", "sh[lid + s]")}; }
    workgroupBarrier();
  }
  if (lid == 0u) { y[row] = ${store(ctx, x.dtype, "sh[0]")}; }`
    : `
  let o = ${WG_INDEX} * ${WG}u + lid;
  if (o >= p[0]) { return; }
  let n = p[1];
  let inner = p[2];
  let base = (o / inner) * n * inner + o % inner;
  var acc = ${INIT[op]};
  for (var j = 0u; j < n; j++) { acc = ${c("acc", "f32(x[base + j * inner])")}; }
  y[o] = ${store(ctx, x.dtype, "acc")};`;
  const pipe = ctx.pipeline(key, () =>
    `${header(ctx, [x.dtype])}
${declare(ctx, 0, "x", x.dtype, "read")}
${declare(ctx, 1, "y", x.dtype, "read_write")}
${declareParams(2)}
${rowwise ? `var<workgroup> sh: array<f32, ${RW}>;` : ""}
@compute @workgroup_size(${rowwise ? RW : WG})
fn main(${BUILTINS}) {${body}
}`);
  ctx.dispatch(
    pipe,
    [ctx.buffer(x.id), ctx.buffer(out), params(ctx, [rows, n, inner])],
    grid(ctx, rowwise ? rows : Math.ceil(rows / WG)),
    `reduce-${op}`,
  );
  return out;
}

/**
 * Stable softmax along `axis` (max, then sum of exp(x − max), then divide); a row whose max
 * is −∞ gives zeros. Same row/column split as {@link reduceKernel}.
 */
export function softmaxKernel(ctx: GpuContext, x: TensorInfo, axis: number): DataId {
  const [outer, n, inner] = around(x.shape, axis);
  const total = outer * n * inner;
  checkFits(ctx, "softmax", [x], total, x.dtype);
  const out = ctx.alloc(total, x.dtype);
  const rows = outer * inner;
  if (total === 0) return out;
  const rowwise = inner === 1;
  const RW = rowThreads(n);
  const key = `softmax:${rowwise ? `row${RW}` : "col"}:${x.dtype}`;
  const write = (v: string) => store(ctx, x.dtype, `select(${v}, 0.0, dead)`);
  // Barriers must sit in uniform control flow, so a dead row runs every pass and only its
  // writes are replaced by zeros.
  const body = rowwise
    ? `
  let row = ${WG_INDEX};
  if (row >= p[0]) { return; }
  let n = p[1];
  let base = row * n;
  var m = neg_inf();
  for (var j = lid; j < n; j += ${RW}u) { m = max_nan(m, f32(x[base + j])); }
  sh[lid] = m;
  workgroupBarrier();
  for (var s = ${RW / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { sh[lid] = max_nan(sh[lid], sh[lid + s]); }
    workgroupBarrier();
  }
  m = sh[0];
  workgroupBarrier();
  let dead = m == neg_inf();
  var l = 0.0;
  for (var j = lid; j < n; j += ${RW}u) { l += exp(f32(x[base + j]) - m); }
  sh[lid] = l;
  workgroupBarrier();
  for (var s = ${RW / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { sh[lid] = sh[lid] + sh[lid + s]; }
    workgroupBarrier();
  }
  l = sh[0];
  for (var j = lid; j < n; j += ${RW}u) {
    y[base + j] = ${write("exp(f32(x[base + j]) - m) / l")};
  }`
    : `
  let o = ${WG_INDEX} * ${WG}u + lid;
  if (o >= p[0]) { return; }
  let n = p[1];
  let inner = p[2];
  let base = (o / inner) * n * inner + o % inner;
  var m = neg_inf();
  for (var j = 0u; j < n; j++) { m = max_nan(m, f32(x[base + j * inner])); }
  let dead = m == neg_inf();
  var l = 0.0;
  for (var j = 0u; j < n; j++) { l += exp(f32(x[base + j * inner]) - m); }
  for (var j = 0u; j < n; j++) {
    y[base + j * inner] = ${write("exp(f32(x[base + j * inner]) - m) / l")};
  }`;
  const pipe = ctx.pipeline(key, () =>
    `${header(ctx, [x.dtype])}
${declare(ctx, 0, "x", x.dtype, "read")}
${declare(ctx, 1, "y", x.dtype, "read_write")}
${declareParams(2)}
${rowwise ? `var<workgroup> sh: array<f32, ${RW}>;` : ""}
@compute @workgroup_size(${rowwise ? RW : WG})
fn main(${BUILTINS}) {${body}
}`);
  ctx.dispatch(
    pipe,
    [ctx.buffer(x.id), ctx.buffer(out), params(ctx, [rows, n, inner])],
    grid(ctx, rowwise ? rows : Math.ceil(rows / WG)),
    "softmax",
  );
  return out;
}

/** Threads per side of a matmul workgroup (16×16). */
const T = 16;
/** k-slice staged in workgroup memory per step. */
const BK = 16;

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
    `${header(ctx, [a.dtype, b.dtype, outDType])}
${declare(ctx, 0, "xa", a.dtype, "read")}
${declare(ctx, 1, "xb", b.dtype, "read")}
${
      split
        ? "@group(0) @binding(2) var<storage, read_write> y: array<f32>;"
        : declare(ctx, 2, "y", outDType, "read_write")
    }
${declareParams(3)}
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
  var rem = bt;
  let r = p[8];
  var ma = 0u;
  var mb = 0u;
  for (var d = r; d > 0u; d--) {
    let dim = p[8u + d];
    let c = rem % dim;
    rem = rem / dim;
    ma += c * p[8u + r + d];
    mb += c * p[8u + 2u * r + d];
  }
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
  const total = batches * M * N;
  const target = split ? ctx.scratch(splits * total * 4) : ctx.buffer(out);
  ctx.dispatch(
    pipe,
    [
      ctx.buffer(a.id),
      ctx.buffer(b.id),
      target,
      params(ctx, [
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
      ]),
    ],
    grid(ctx, tiles * splits),
    "matmul",
  );
  if (split) sumSplits(ctx, target, splits, total, out, outDType);
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
    `${header(ctx, [a.dtype, b.dtype, outDType])}
${declare(ctx, 0, "xa", a.dtype, "read")}
${declare(ctx, 1, "xb", b.dtype, "read")}
${
      split
        ? "@group(0) @binding(2) var<storage, read_write> y: array<f32>;"
        : declare(ctx, 2, "y", outDType, "read_write")
    }
${declareParams(3)}
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
  var rem = bt;
  let r = p[8];
  var ma = 0u;
  var mb = 0u;
  for (var d = r; d > 0u; d--) {
    let dim = p[8u + d];
    let c = rem % dim;
    rem = rem / dim;
    ma += c * p[8u + r + d];
    mb += c * p[8u + 2u * r + d];
  }
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
  const total = batches * M * N;
  const target = split ? ctx.scratch(splits * total * 4) : ctx.buffer(out);
  ctx.dispatch(
    pipe,
    [
      ctx.buffer(a.id),
      ctx.buffer(b.id),
      target,
      params(ctx, [
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
      ]),
    ],
    grid(ctx, tiles * splits),
    "matmul",
  );
  if (split) sumSplits(ctx, target, splits, total, out, outDType);
}

/** Output tiles below which a matmul splits K. */
const SPLIT_TARGET = 2048;
/** Shortest K range a split gets. */
const SPLIT_MIN_K = 256;

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

/** Permutes axes: output dim `i` is input dim `perm[i]`. */
export function transposeKernel(ctx: GpuContext, x: TensorInfo, perm: readonly number[]): DataId {
  const n = sizeOf(x.shape);
  checkFits(ctx, "transpose", [x], n, x.dtype);
  const out = ctx.alloc(n, x.dtype);
  if (n === 0) return out;
  const inStrides = stridesOf(x.shape);
  const outShape = perm.map((d) => x.shape[d]);
  const key = `transpose:${x.dtype}`;
  const pipe = ctx.pipeline(key, () =>
    `${header(ctx, [x.dtype])}
${declare(ctx, 0, "x", x.dtype, "read")}
${declare(ctx, 1, "y", x.dtype, "read_write")}
${declareParams(2)}
${ELEMENTWISE_MAIN}
fn elem(i: u32) {
  let r = p[1];
  var rem = i;
  var src = 0u;
  for (var d = r; d > 0u; d--) {
    let dim = p[1u + d];
    src += (rem % dim) * p[1u + r + d];
    rem = rem / dim;
  }
  y[i] = x[src];
}`);
  ctx.dispatch(
    pipe,
    [
      ctx.buffer(x.id),
      ctx.buffer(out),
      params(ctx, [n, perm.length, ...outShape, ...perm.map((d) => inStrides[d])]),
    ],
    grid(ctx, Math.ceil(n / WG_ELEMS)),
    "transpose",
  );
  return out;
}
