/**
 * CPU kernels of the composable ops. Inputs were validated by `ops/`; these trust their
 * arguments. Arithmetic runs in JS doubles and is rounded once when stored, so a CPU result is
 * at least as accurate as a float32 computation (tests hold every backend to float32 bounds).
 *
 * @module
 */
import type { BinaryOp, ReduceOp, TensorInfo, UnaryOp } from "../backend.ts";
import type { DType } from "../../tensor/dtype.ts";
import { type Shape, sizeOf, stridesOf } from "../../tensor/shape.ts";
import { allocCpu, type CpuArray, cpuValues } from "./_storage.ts";

/** Elementwise `exp`, `neg`, `log` or `tanh`; output has the input's dtype. */
export function unary(op: UnaryOp, x: TensorInfo): CpuArray {
  const v = cpuValues(x);
  const n = sizeOf(x.shape);
  const out = allocCpu(n, x.dtype);
  const f = unaryFn(op);
  for (let i = 0; i < n; i++) out[i] = f(v[i]);
  return out;
}

function unaryFn(op: UnaryOp): (x: number) => number {
  switch (op) {
    case "exp":
      return Math.exp;
    case "neg":
      return (x) => -x;
    case "log":
      return Math.log;
    case "tanh":
      return Math.tanh;
  }
}

function binaryFn(op: BinaryOp): (a: number, b: number) => number {
  switch (op) {
    case "add":
      return (a, b) => a + b;
    case "sub":
      return (a, b) => a - b;
    case "mul":
      return (a, b) => a * b;
    case "div":
      return (a, b) => a / b;
    case "max":
      // NaN propagates (as in NumPy's maximum), unlike a bare comparison.
      return (a, b) => (a !== a || b !== b ? NaN : a > b ? a : b);
  }
}

/** Strides of `shape` read as broadcast to `outShape` (0 along broadcast dimensions). */
function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const s = stridesOf(shape);
  const r = outShape.length;
  const out = new Array<number>(r).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const o = r - shape.length + i;
    out[o] = shape[i] === 1 && outShape[o] !== 1 ? 0 : s[i];
  }
  return out;
}

/** Elementwise binary op, NumPy broadcasting to `outShape`, stored as `outDType`. */
export function binary(
  op: BinaryOp,
  a: TensorInfo,
  b: TensorInfo,
  outShape: Shape,
  outDType: DType,
): CpuArray {
  const av = cpuValues(a);
  const bv = cpuValues(b);
  const n = sizeOf(outShape);
  const out = allocCpu(n, outDType);
  const f = binaryFn(op);
  const na = sizeOf(a.shape);
  const nb = sizeOf(b.shape);
  if (na === n && nb === n) {
    for (let i = 0; i < n; i++) out[i] = f(av[i], bv[i]);
    return out;
  }
  if (nb === 1 && na === n) {
    const y = bv[0];
    for (let i = 0; i < n; i++) out[i] = f(av[i], y);
    return out;
  }
  if (n === 0) return out;
  // General case: walk the output with the innermost dimension as a tight loop.
  const r = outShape.length;
  const sa = broadcastStrides(a.shape, outShape);
  const sb = broadcastStrides(b.shape, outShape);
  const inner = outShape[r - 1];
  const ia = sa[r - 1];
  const ib = sb[r - 1];
  const idx = new Array<number>(r).fill(0);
  let oa = 0;
  let ob = 0;
  for (let o = 0; o < n; o += inner) {
    for (let j = 0; j < inner; j++) out[o + j] = f(av[oa + j * ia], bv[ob + j * ib]);
    // Odometer increment over the outer dimensions.
    for (let d = r - 2; d >= 0; d--) {
      idx[d]++;
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < outShape[d]) break;
      oa -= sa[d] * idx[d];
      ob -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * Elementwise select, NumPy broadcasting to `outShape`: `a` where `cond` is nonzero (NaN
 * counts as nonzero), else `b`. The chosen value is copied, so the other operand never leaks.
 */
export function where(
  cond: TensorInfo,
  a: TensorInfo,
  b: TensorInfo,
  outShape: Shape,
  outDType: DType,
): CpuArray {
  const cv = cpuValues(cond);
  const av = cpuValues(a);
  const bv = cpuValues(b);
  const n = sizeOf(outShape);
  const out = allocCpu(n, outDType);
  if (n === 0) return out;
  const r = outShape.length;
  if (r === 0) {
    out[0] = cv[0] !== 0 ? av[0] : bv[0];
    return out;
  }
  const sc = broadcastStrides(cond.shape, outShape);
  const sa = broadcastStrides(a.shape, outShape);
  const sb = broadcastStrides(b.shape, outShape);
  const inner = outShape[r - 1];
  const [ic, ia, ib] = [sc[r - 1], sa[r - 1], sb[r - 1]];
  const idx = new Array<number>(r).fill(0);
  let oc = 0;
  let oa = 0;
  let ob = 0;
  for (let o = 0; o < n; o += inner) {
    for (let j = 0; j < inner; j++) {
      // `!== 0` is true for NaN, so a NaN condition selects a.
      out[o + j] = cv[oc + j * ic] !== 0 ? av[oa + j * ia] : bv[ob + j * ib];
    }
    for (let d = r - 2; d >= 0; d--) {
      idx[d]++;
      oc += sc[d];
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < outShape[d]) break;
      oc -= sc[d] * idx[d];
      oa -= sa[d] * idx[d];
      ob -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** `[outer, n, inner]` view of a shape around `axis`. */
function around(shape: Shape, axis: number): [number, number, number] {
  return [sizeOf(shape.slice(0, axis)), shape[axis], sizeOf(shape.slice(axis + 1))];
}

/** Sum or max along `axis` (removed). Empty sum = 0, empty max = −∞; max propagates NaN. */
export function reduce(op: ReduceOp, x: TensorInfo, axis: number): CpuArray {
  const v = cpuValues(x);
  const [outer, n, inner] = around(x.shape, axis);
  const out = allocCpu(outer * inner, x.dtype);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * n * inner + i;
      let acc = op === "sum" ? 0 : -Infinity;
      if (op === "sum") {
        for (let j = 0; j < n; j++) acc += v[base + j * inner];
      } else {
        for (let j = 0; j < n; j++) {
          const y = v[base + j * inner];
          if (y !== y) {
            acc = NaN;
            break;
          }
          if (y > acc) acc = y;
        }
      }
      out[o * inner + i] = acc;
    }
  }
  return out;
}

/** Numerically stable softmax along `axis`; a row whose max is −∞ (all masked) gives 0s. */
export function softmax(x: TensorInfo, axis: number): CpuArray {
  const v = cpuValues(x);
  const [outer, n, inner] = around(x.shape, axis);
  const out = allocCpu(outer * n * inner, x.dtype);
  const e = new Float64Array(n);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * n * inner + i;
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        const y = v[base + j * inner];
        if (y > m || y !== y) m = y;
        if (m !== m) break;
      }
      if (m === -Infinity) {
        for (let j = 0; j < n; j++) out[base + j * inner] = 0;
        continue;
      }
      let l = 0;
      for (let j = 0; j < n; j++) {
        e[j] = Math.exp(v[base + j * inner] - m);
        l += e[j];
      }
      for (let j = 0; j < n; j++) out[base + j * inner] = e[j] / l;
    }
  }
  return out;
}

/**
 * Batched matmul `[..., M, K] × [..., K, N]` (either side optionally transposed in its last
 * two dims), leading dims broadcast to `outShape[:-2]`. Accumulates in doubles.
 */
export function matmul(
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  outShape: Shape,
  outDType: DType,
): CpuArray {
  const av = cpuValues(a);
  const bv = cpuValues(b);
  const r = outShape.length;
  const M = outShape[r - 2];
  const N = outShape[r - 1];
  const ra = a.shape.length;
  const K = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const out = allocCpu(sizeOf(outShape), outDType);
  // Element (i, k) of a is at i*aI + k*aK inside its matrix; (k, j) of b at k*bK + j*bJ.
  const aI = transposeA ? 1 : K;
  const aK = transposeA ? M : 1;
  const bK = transposeB ? 1 : N;
  const bJ = transposeB ? K : 1;
  const batchShape = outShape.slice(0, r - 2);
  const batches = sizeOf(batchShape);
  const sa = broadcastStrides(a.shape.slice(0, ra - 2), batchShape);
  const sb = broadcastStrides(b.shape.slice(0, b.shape.length - 2), batchShape);
  const acc = new Float64Array(N);
  const idx = new Array<number>(batchShape.length).fill(0);
  let ma = 0; // matrix index of a (in matrices), following the broadcast odometer
  let mb = 0;
  for (let bt = 0; bt < batches; bt++) {
    const oa = ma * M * K;
    const ob = mb * K * N;
    const oo = bt * M * N;
    for (let i = 0; i < M; i++) {
      if (!transposeB) {
        // Row-wise update keeps b's rows contiguous in the inner loop.
        acc.fill(0);
        for (let k = 0; k < K; k++) {
          const x = av[oa + i * aI + k * aK];
          const row = ob + k * bK;
          for (let j = 0; j < N; j++) acc[j] += x * bv[row + j];
        }
        for (let j = 0; j < N; j++) out[oo + i * N + j] = acc[j];
      } else {
        for (let j = 0; j < N; j++) {
          let s = 0;
          const col = ob + j * bJ;
          for (let k = 0; k < K; k++) s += av[oa + i * aI + k * aK] * bv[col + k];
          out[oo + i * N + j] = s;
        }
      }
    }
    for (let d = batchShape.length - 1; d >= 0; d--) {
      idx[d]++;
      ma += sa[d];
      mb += sb[d];
      if (idx[d] < batchShape[d]) break;
      ma -= sa[d] * idx[d];
      mb -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** Permutes axes: output dim `i` is input dim `perm[i]`. */
export function transpose(x: TensorInfo, perm: readonly number[]): CpuArray {
  const v = cpuValues(x);
  const n = sizeOf(x.shape);
  const out = allocCpu(n, x.dtype);
  const r = perm.length;
  if (n === 0) return out;
  if (r === 0) {
    out[0] = v[0];
    return out;
  }
  const inStrides = stridesOf(x.shape);
  const outShape = perm.map((p) => x.shape[p]);
  const s = perm.map((p) => inStrides[p]);
  const inner = outShape[r - 1];
  const si = s[r - 1];
  const idx = new Array<number>(r).fill(0);
  let src = 0;
  for (let o = 0; o < n; o += inner) {
    for (let j = 0; j < inner; j++) out[o + j] = v[src + j * si];
    for (let d = r - 2; d >= 0; d--) {
      idx[d]++;
      src += s[d];
      if (idx[d] < outShape[d]) break;
      src -= s[d] * idx[d];
      idx[d] = 0;
    }
  }
  return out;
}
