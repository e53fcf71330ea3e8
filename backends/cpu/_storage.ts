/**
 * Storage of CPU tensors: typed arrays on SharedArrayBuffer, so Web Workers can read them
 * without copies; float16 is stored in `Float16Array`.
 *
 * @module
 */
import type { DataId, TensorInfo } from "../backend.ts";
import type { DType } from "../../tensor/dtype.ts";
import { LimitError } from "../../tensor/errors.ts";

/** Typed array a CPU tensor is stored in. */
export type CpuArray = Float32Array | Float16Array;

/** CPU storage of one tensor. */
export class CpuData {
  constructor(readonly values: CpuArray) {}
}

/**
 * New zeroed storage of `n` elements; throws {@link LimitError} where the JavaScript engine
 * cannot allocate it (over its array limits, or out of memory).
 */
export function allocCpu(n: number, dtype: DType): CpuArray {
  try {
    return dtype === "float16"
      ? new Float16Array(new SharedArrayBuffer(Math.max(2, n * 2)), 0, n)
      : new Float32Array(new SharedArrayBuffer(Math.max(4, n * 4)), 0, n);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw new LimitError(`cpu: cannot allocate ${n} ${dtype} elements: ${e.message}`);
  }
}

/** The typed array behind a CPU tensor. */
export function cpuValues(x: TensorInfo | DataId): CpuArray {
  const id = "id" in x && "shape" in x ? (x as TensorInfo).id : x;
  return (id as CpuData).values;
}
