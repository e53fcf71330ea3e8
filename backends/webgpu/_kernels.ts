/**
 * WGSL kernels of the elementwise ops, reductions, softmax and transpose (matmul is in
 * `_matmul.ts`, attention in `attention.ts`), written against
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
export const WG = 256;
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
export function checkFits(
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

export function params(ctx: GpuContext, values: readonly number[]): GPUBuffer {
  return ctx.scratchFrom(Uint32Array.from(values));
}

const UNARY: Record<UnaryOp | "copy", string> = {
  exp: "exp(v)",
  neg: "-v",
  log: "log(v)",
  // |v| ≥ 10 is ±1 in float32 anyway; clamping keeps a driver's exp-based tanh from ∞/∞ = NaN.
  tanh: "tanh(clamp(v, -10.0, 10.0))",
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
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const s = stridesOf(shape);
  const off = outShape.length - shape.length;
  return outShape.map((_, d) => {
    const i = d - off;
    return i < 0 || shape[i] === 1 ? 0 : s[i];
  });
}

/**
 * WGSL: decodes the flat index `from` over the dims packed at `p[at]` — the rank `r`, then the
 * `r` dims, then each operand's {@link broadcastStrides} — into one element offset per name
 * (`var`s, in operand order). The host packs `[r, ...dims, ...strides of each operand]`.
 */
export function broadcastOffsets(at: number, from: string, names: readonly string[]): string {
  const adds = names.map((n, i) => `    ${n} += c * p[${at}u + ${i ? `${i + 1}u * ` : ""}r + d];`);
  return `let r = p[${at}];
  var rem = ${from};
${names.map((n) => `  var ${n} = 0u;`).join("\n")}
  for (var d = r; d > 0u; d--) {
    let dim = p[${at}u + d];
    let c = rem % dim;
    rem = rem / dim;
${adds.join("\n")}
  }`;
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
  const index = flat ? "let ia = i; let ib = i;" : broadcastOffsets(1, "i", ["ia", "ib"]);
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
  const index = flat
    ? "let ic = i; let ia = i; let ib = i;"
    : broadcastOffsets(1, "i", ["ic", "ia", "ib"]);
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
  alongAxis(ctx, key, body, x, out, rowwise, RW, rows, n, inner, `reduce-${op}`);
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
  alongAxis(ctx, key, body, x, out, rowwise, RW, rows, n, inner, "softmax");
  return out;
}

/**
 * Compiles (cached by `key`) and dispatches a kernel that reads `x` along one axis
 * (`rows` outer×inner positions, `n` elements apart by `inner`) and writes `out`: one thread
 * per row, or one workgroup of `RW` threads per row when `rowwise`. Shared by reduce and softmax.
 */
function alongAxis(
  ctx: GpuContext,
  key: string,
  body: string,
  x: TensorInfo,
  out: DataId,
  rowwise: boolean,
  RW: number,
  rows: number,
  n: number,
  inner: number,
  label: string,
): void {
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
    label,
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
