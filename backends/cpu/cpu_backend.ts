/**
 * The CPU backend: typed arrays (on SharedArrayBuffer, so Web Workers can read them without
 * copies), float32 arithmetic, float16 stored in `Float16Array`.
 *
 * @module
 */
import type {
  AttentionInputs,
  AttentionPlan,
  Backend,
  BinaryOp,
  DataId,
  MemoryInfo,
  ReduceOp,
  TensorInfo,
  UnaryOp,
} from "../backend.ts";
import { type DType, isQuantDType, type QuantDType } from "../../tensor/dtype.ts";
import { E4M3_VALUES, encodeE4M3 } from "../../tensor/float8.ts";
import { dequantizeCpu, quantizeCpu } from "./_quantize.ts";
import type { Shape } from "../../tensor/shape.ts";
import { ropeCpu } from "./_rope.ts";
import * as k from "./kernels.ts";
import { setFallbackTensorBackend } from "../../tensor/default_backend.ts";
import { cpuMergeStates } from "./attention.ts";
import {
  cpuAttentionOp,
  MAX_CPU_THREADS,
  pooledThreads,
  pooledUnavailable,
  setPooledThreads,
} from "./_attention_pooled.ts";
import { ArgumentError, show } from "../../tensor/errors.ts";
import { gatherPageRows, indexTable, scatterPageRows } from "./_pages.ts";
import {
  allocCpu,
  allocCpuQuant,
  type CpuArray,
  CpuData,
  type CpuQuantArray,
  cpuValues,
} from "./_storage.ts";
import { simdScratchBytes } from "./_attention_simd.ts";
import { workerScratchBytes } from "./_attention_worker.ts";

export { allocCpu, type CpuArray, CpuData, cpuValues };

class CpuBackend implements Backend {
  readonly name = "cpu";
  readonly description = `CPU (${navigator.hardwareConcurrency} logical cores)`;
  readonly parallelism = navigator.hardwareConcurrency || 1;
  /** Default lean `grid`: twice the cores, so a core that finishes early takes another run. */
  readonly defaultGrid = this.parallelism * 2;
  readonly nativeF16 = true;
  #live = new Set<CpuData>();

  #wrap(values: CpuArray | CpuQuantArray | Int32Array): DataId {
    const d = new CpuData(values);
    this.#live.add(d);
    return d;
  }

  upload(values: Float32Array, dtype: DType): DataId {
    if (isQuantDType(dtype)) {
      // Values arrive on the dtype's grid (creation rounds them): int8 integers, E4M3 values.
      const q = allocCpuQuant(values.length, dtype);
      if (dtype === "int8") q.set(values);
      else for (let i = 0; i < values.length; i++) q[i] = encodeE4M3(values[i]);
      return this.#wrap(q);
    }
    const a = allocCpu(values.length, dtype);
    a.set(values);
    return this.#wrap(a);
  }
  read(id: DataId, dtype: DType, size: number): Promise<Float32Array> {
    const v = (id as CpuData).values;
    if (dtype === "float8e4m3") {
      return Promise.resolve(Float32Array.from(v.subarray(0, size), (c) => E4M3_VALUES[c]));
    }
    return Promise.resolve(Float32Array.from(v.subarray(0, size)));
  }
  release(id: DataId): void {
    this.#live.delete(id as CpuData);
  }
  memory(): MemoryInfo {
    let liveBytes = 0;
    for (const d of this.#live) liveBytes += d.values.byteLength;
    // Pooled: the attention scratch this thread and the worker threads keep between calls,
    // at most SCRATCH_POOL_BYTES each (a call needing more frees its own when done).
    const pooledBytes = simdScratchBytes() + workerScratchBytes();
    return { liveBytes, pooledBytes, liveCount: this.#live.size };
  }

  createIndexTable(values: Int32Array): DataId {
    return this.#wrap(indexTable(values));
  }
  gatherPageRows(pages: TensorInfo, rows: Int32Array, B: number, n: number): DataId {
    return this.#wrap(gatherPageRows(pages, rows, B, n));
  }
  scatterPageRows(pages: TensorInfo, src: TensorInfo, rows: Int32Array): void {
    scatterPageRows(pages, src, rows);
  }

  unary(op: UnaryOp, x: TensorInfo): DataId {
    return this.#wrap(k.unary(op, x));
  }
  binary(op: BinaryOp, a: TensorInfo, b: TensorInfo, outShape: Shape, outDType: DType): DataId {
    return this.#wrap(k.binary(op, a, b, outShape, outDType));
  }
  where(
    cond: TensorInfo,
    a: TensorInfo,
    b: TensorInfo,
    outShape: Shape,
    outDType: DType,
  ): DataId {
    return this.#wrap(k.where(cond, a, b, outShape, outDType));
  }
  reduce(op: ReduceOp, x: TensorInfo, axis: number): DataId {
    return this.#wrap(k.reduce(op, x, axis));
  }
  softmax(x: TensorInfo, axis: number): DataId {
    return this.#wrap(k.softmax(x, axis));
  }
  matmul(
    a: TensorInfo,
    b: TensorInfo,
    transposeA: boolean,
    transposeB: boolean,
    outShape: Shape,
    outDType: DType,
  ): DataId {
    return this.#wrap(k.matmul(a, b, transposeA, transposeB, outShape, outDType));
  }
  transpose(x: TensorInfo, perm: readonly number[]): DataId {
    return this.#wrap(k.transpose(x, perm));
  }
  rope(
    x: TensorInfo,
    cos: TensorInfo,
    sin: TensorInfo,
    rows: TensorInfo,
    rotaryDim: number,
    interleaved: boolean,
  ): DataId {
    return this.#wrap(ropeCpu(x, cos, sin, rows, rotaryDim, interleaved));
  }
  cast(x: TensorInfo, dtype: DType): DataId {
    const out = allocCpu(cpuValues(x).length, dtype);
    out.set(cpuValues(x));
    return this.#wrap(out);
  }
  quantize(x: TensorInfo, dtype: QuantDType): { data: DataId; scale: DataId } {
    const r = quantizeCpu(x, dtype);
    return { data: this.#wrap(r.data), scale: this.#wrap(r.scale) };
  }
  dequantize(data: TensorInfo, scale: TensorInfo): DataId {
    return this.#wrap(dequantizeCpu(data, scale));
  }
  attention(
    q: TensorInfo,
    k: TensorInfo,
    v: TensorInfo,
    plan: AttentionPlan,
    inputs?: AttentionInputs,
  ) {
    // CPU tensors are stored whole: a plan here has exactly one run.
    const r = cpuAttentionOp(q, k, v, plan.runs[0], inputs);
    return { out: this.#wrap(r.out), lse: this.#wrap(r.lse) };
  }
  mergeStates(outs: readonly TensorInfo[], lses: readonly TensorInfo[]) {
    const r = cpuMergeStates(outs, lses);
    return { out: this.#wrap(r.out), lse: this.#wrap(r.lse) };
  }
}

/**
 * Threads the CPU backend's attention ops use (the calling thread included; default: the
 * logical core count, at most 64), and why they run in the calling thread alone where more
 * were set: no Worker could be started, one died while loading the library, or the thread
 * may not block (a browser's main thread); null otherwise.
 */
export function cpuThreads(): { threads: number; unavailable: string | null } {
  return { threads: pooledThreads(), unavailable: pooledUnavailable() };
}

/**
 * Sets the threads the CPU backend's attention ops use, the calling thread included (1: only
 * it); returns the previous count. A call with enough work (about 2²¹ K/V elements visited)
 * spreads its schedule's workers over `node:worker_threads` Workers that share the inputs
 * and outputs, and blocks until they are done: ops stay synchronous, and the bits are those of
 * one thread. Idle Workers do not keep the process alive.
 *
 * @example
 * ```ts
 * import { cpuThreads, setCpuThreads } from "../../mod.ts";
 * const was = setCpuThreads(1); // attention on the calling thread only
 * console.log(cpuThreads().threads); // 1
 * setCpuThreads(was);
 * ```
 */
export function setCpuThreads(n: number): number {
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1 || n > MAX_CPU_THREADS) {
    throw new ArgumentError(
      `setCpuThreads: n must be an integer from 1 to ${MAX_CPU_THREADS}, got ${show(n)}`,
    );
  }
  return setPooledThreads(n);
}

let instance: Backend | null = null;

/** The CPU backend (a singleton). */
export function cpu(): Backend {
  return instance ??= new CpuBackend();
}

// The CPU backend is where tensors go while no other default was chosen.
setFallbackTensorBackend(cpu);
