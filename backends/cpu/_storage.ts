/**
 * Storage of CPU tensors: typed arrays on SharedArrayBuffer, so Web Workers can read them
 * without copies; float16 is stored in `Float16Array`, int8 in `Int8Array`, float8e4m3 as its
 * codes in `Uint8Array`.
 *
 * @module
 */
import type { DataId, TensorInfo } from "../backend.ts";
import { type DType, isQuantDType, type QuantDType } from "../../tensor/dtype.ts";
import { LimitError } from "../../tensor/errors.ts";

/** Typed array a CPU tensor is stored in. */
export type CpuArray = Float32Array | Float16Array;

/** Typed array of a quantized storage dtype: int8 values, or float8e4m3 codes. */
export type CpuQuantArray = Int8Array | Uint8Array;

/** CPU storage of one tensor, or of an int32 index table (a paged K/V block table). */
export class CpuData {
  constructor(readonly values: CpuArray | CpuQuantArray | Int32Array) {}
}

/** New zeroed storage of `n` elements of a quantized dtype (see {@link allocCpu}). */
export function allocCpuQuant(n: number, dtype: QuantDType): CpuQuantArray {
  return allocating(n, dtype, () => {
    const buffer = new SharedArrayBuffer(Math.max(1, n));
    return dtype === "int8" ? new Int8Array(buffer, 0, n) : new Uint8Array(buffer, 0, n);
  });
}

/** `make()`, with the engine's RangeError (array limits, out of memory) a LimitError. */
function allocating<T>(n: number, dtype: DType, make: () => T): T {
  try {
    return make();
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw new LimitError(`cpu: cannot allocate ${n} ${dtype} elements: ${e.message}`);
  }
}

/** The bytes behind a CPU tensor of a quantized dtype. */
export function cpuQuantValues(x: TensorInfo | DataId): CpuQuantArray {
  const id = "id" in x && "shape" in x ? (x as TensorInfo).id : x;
  return (id as CpuData).values as CpuQuantArray;
}

/**
 * New zeroed storage of `n` elements; throws {@link LimitError} where the JavaScript engine
 * cannot allocate it (over its array limits, or out of memory).
 */
export function allocCpu(n: number, dtype: DType): CpuArray {
  // Kernels compute in float; ops refuse quantized inputs before any kernel runs.
  if (isQuantDType(dtype)) throw new Error(`allocCpu: ${dtype} is storage only (a bug)`);
  return allocating(
    n,
    dtype,
    () =>
      dtype === "float16"
        ? new Float16Array(new SharedArrayBuffer(Math.max(2, n * 2)), 0, n)
        : new Float32Array(new SharedArrayBuffer(Math.max(4, n * 4)), 0, n),
  );
}

/**
 * The typed array behind a CPU tensor of float32 or float16 (ops refuse the quantized dtypes
 * before reaching a kernel; {@link cpuQuantValues} reads those).
 */
export function cpuValues(x: TensorInfo | DataId): CpuArray {
  const id = "id" in x && "shape" in x ? (x as TensorInfo).id : x;
  return (id as CpuData).values as CpuArray;
}
