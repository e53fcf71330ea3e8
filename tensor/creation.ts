/**
 * Creating tensors: from flat or nested arrays, constants, seeded normals and ndarrays.
 *
 * @module
 */
import { defaultTensorBackend } from "./default_backend.ts";
import type { TensorBackend } from "./storage.ts";
import { checkDType, type DType, roundToF16 } from "./dtype.ts";
import { ShapeError, show } from "./errors.ts";
import { normals } from "./random.ts";
import { checkShape, fmt, type Shape, sizeOf } from "./shape.ts";
import { Tensor } from "./tensor.ts";

/** Options of the creation functions. */
export interface CreationOptions {
  /** Storage dtype (default `"float32"`). */
  dtype?: DType;
  /** Where the tensor lives (default: the backend `setBackend` or `defaultBackend` chose, initially the CPU). */
  backend?: TensorBackend;
}

/** Flat numeric data accepted by {@link tensor}. */
export type FlatData = ArrayLike<number>;
/** Nested arrays of numbers accepted by {@link tensor}. */
export type NestedData = number | readonly NestedData[];

/** Builds a tensor from already-float32 values (copied to storage). @internal */
export function fromValues(values: Float32Array, shape: Shape, opts: CreationOptions = {}): Tensor {
  const dtype = checkDType(opts.dtype ?? "float32");
  const backend = opts.backend ?? defaultTensorBackend();
  if (dtype === "float16") roundToF16(values);
  return new Tensor(backend, backend.upload(values, dtype, shape), shape, dtype);
}

/**
 * A tensor from a flat array (with `shape`) or nested arrays (shape inferred).
 *
 * @example
 * ```ts
 * import { tensor } from "../mod.ts";
 * const t = tensor([[1, 2, 3], [4, 5, 6]]);
 * console.log(t.shape); // [2, 3]
 * ```
 */
export function tensor(
  data: FlatData | NestedData,
  opts: CreationOptions & { shape?: readonly number[] } = {},
): Tensor {
  let values: Float32Array;
  let shape: Shape;
  if (typeof data === "number") {
    values = Float32Array.of(data);
    shape = [];
  } else if (isFlat(data)) {
    values = Float32Array.from(data as ArrayLike<number>);
    shape = [values.length];
  } else {
    const inferred: number[] = [];
    let level: unknown = data;
    while (Array.isArray(level)) {
      inferred.push(level.length);
      level = level[0];
    }
    const flat: number[] = [];
    flatten(data, inferred, 0, flat);
    values = Float32Array.from(flat);
    shape = inferred;
  }
  if (opts.shape !== undefined) {
    const s = checkShape([...opts.shape], "tensor");
    if (sizeOf(s) !== values.length) {
      throw new ShapeError(
        `tensor: shape ${fmt(s)} needs ${sizeOf(s)} values, got ${values.length}`,
      );
    }
    shape = s;
  }
  return fromValues(values, shape, opts);
}

function isFlat(data: unknown): boolean {
  if (ArrayBuffer.isView(data)) return true;
  return Array.isArray(data) && (data.length === 0 || typeof data[0] === "number");
}

function flatten(x: unknown, shape: number[], dim: number, out: number[]): void {
  if (dim === shape.length) {
    if (typeof x !== "number") {
      throw new ShapeError(`tensor: ragged nested array (expected a number at depth ${dim})`);
    }
    out.push(x);
    return;
  }
  if (!Array.isArray(x) || x.length !== shape[dim]) {
    throw new ShapeError(
      `tensor: ragged nested array: expected length ${shape[dim]} at depth ${dim}, got ${
        Array.isArray(x) ? x.length : typeof x
      }`,
    );
  }
  for (const e of x) flatten(e, shape, dim + 1, out);
}

/** A tensor filled with `value`. */
export function full(shape: readonly number[], value: number, opts: CreationOptions = {}): Tensor {
  const s = checkShape([...shape], "full");
  return fromValues(new Float32Array(sizeOf(s)).fill(value), s, opts);
}

/** A tensor of zeros. */
export function zeros(shape: readonly number[], opts: CreationOptions = {}): Tensor {
  return full(shape, 0, opts);
}

/** A tensor of ones. */
export function ones(shape: readonly number[], opts: CreationOptions = {}): Tensor {
  return full(shape, 1, opts);
}

/**
 * Standard normal samples, reproducible from `seed` across runs and backends.
 *
 * @example
 * ```ts
 * import { randn } from "../mod.ts";
 * const a = await randn([2, 2], { seed: 1 }).data();
 * const b = await randn([2, 2], { seed: 1 }).data();
 * console.log(a.every((x, i) => x === b[i])); // true
 * ```
 */
export function randn(
  shape: readonly number[],
  opts: CreationOptions & { seed: number },
): Tensor {
  const s = checkShape([...shape], "randn");
  if (!Number.isFinite(opts?.seed)) {
    throw new ShapeError(`randn: expected a finite numeric seed, got ${show(opts?.seed)}`);
  }
  return fromValues(normals(sizeOf(s), opts.seed), s, opts);
}
