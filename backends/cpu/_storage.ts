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

/**
 * New zeroed storage of `n` elements of a quantized dtype (see {@link allocCpu}; from 1 MiB on
 * in a WebAssembly memory too, so attention stages its tiles with `memory.copy`).
 */
export function allocCpuQuant(n: number, dtype: QuantDType): CpuQuantArray {
  return allocating(n, dtype, () => {
    const buffer = sharedBytes(Math.max(1, n));
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
 * Storage of at least this many bytes lives in a shared WebAssembly memory of its own (whose
 * buffer is a SharedArrayBuffer like any other), so the attention kernels can copy from it
 * with `memory.copy` (`_wasm_copy.ts`) instead of the slower copy out of a SharedArrayBuffer.
 */
export const WASM_BACKED_MIN_BYTES = 1 << 20;

/** Largest WebAssembly memory, in 64 KiB pages (4 GiB − 64 KiB: 32-bit addresses). */
const WASM_MAX_PAGES = 65535;

const wasmBacked = new WeakMap<ArrayBufferLike, WebAssembly.Memory>();
let wasmBacking = true;
let wasmMinBytes = WASM_BACKED_MIN_BYTES;

/**
 * Turns storage in WebAssembly memory on or off for later allocations, from `minBytes` on (on
 * from {@link WASM_BACKED_MIN_BYTES} by default; for tests and probes comparing the two
 * copies, which give the same bits).
 */
export function setWasmBacking(on: boolean, minBytes = WASM_BACKED_MIN_BYTES): void {
  wasmBacking = on;
  wasmMinBytes = minBytes;
}

/** The shared WebAssembly memory behind `a`'s buffer, if {@link allocCpu} made it one. */
export function wasmMemoryOf(a: ArrayBufferView): WebAssembly.Memory | undefined {
  return wasmBacked.get(a.buffer);
}

/** A SharedArrayBuffer of `bytes` (≥ 1), in a shared WebAssembly memory where large enough. */
function sharedBytes(bytes: number): SharedArrayBuffer {
  const pages = Math.ceil(bytes / 65536);
  if (wasmBacking && bytes >= wasmMinBytes && pages <= WASM_MAX_PAGES) {
    try {
      const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
      const buffer = memory.buffer as SharedArrayBuffer;
      wasmBacked.set(buffer, memory);
      return buffer;
    } catch {
      // No WebAssembly memory to be had (address space): a plain SharedArrayBuffer.
    }
  }
  return new SharedArrayBuffer(bytes);
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
        ? new Float16Array(sharedBytes(Math.max(2, n * 2)), 0, n)
        : new Float32Array(sharedBytes(Math.max(4, n * 4)), 0, n),
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
