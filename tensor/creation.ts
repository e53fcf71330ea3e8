/**
 * Creating tensors: from flat or nested arrays, constants, seeded normals and ndarrays.
 *
 * @module
 */
import { defaultTensorBackend } from "./default_backend.ts";
import type { TensorBackend } from "./storage.ts";
import { checkDType, type DType, isQuantDType, type QuantDType, roundToF16 } from "./dtype.ts";
import { decodeE4M3, E4M3_MAX, encodeE4M3, roundHalfEven } from "./float8.ts";
import { ArgumentError, ShapeError, show } from "./errors.ts";
import { readOptions } from "./options.ts";
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

const CREATION = ["dtype", "backend"] as const;

/** The creation options of `op`, read once (unknown names and bad backends refused). */
function creationOptions<T extends CreationOptions>(
  op: string,
  opts: unknown,
  extra: readonly string[] = [],
): Partial<T> {
  const o = readOptions<T>(op, opts, [...CREATION, ...extra]);
  const b = o.backend as Partial<TensorBackend> | undefined;
  if (
    b !== undefined &&
    (b === null || typeof b !== "object" || typeof b.upload !== "function" ||
      typeof b.read !== "function" || typeof b.release !== "function")
  ) {
    throw new ArgumentError(
      `${op}: backend must be a Backend (cpu(), await webgpu()), got ${show(b)}`,
    );
  }
  return o;
}

/**
 * Builds a tensor from already-float32 values (copied to storage). With `source` (the caller's
 * numbers before conversion, and the public op's name) a finite number that the dtype cannot
 * hold raises instead of becoming ±Infinity, before any storage is allocated. Values for the
 * quantized storage dtypes are rounded onto their grid, and refused outside it, whatever the
 * caller (see {@link toQuantGrid}). @internal
 */
export function fromValues(
  values: Float32Array,
  shape: Shape,
  opts: CreationOptions = {},
  source?: { op: string; values: ArrayLike<number> },
): Tensor {
  const dtype = checkDType(opts.dtype ?? "float32");
  const backend = opts.backend ?? defaultTensorBackend();
  if (dtype === "float16") roundToF16(values);
  if (isQuantDType(dtype)) toQuantGrid(source?.op ?? "tensor", values, shape, dtype);
  else if (source) checkInRange(source.op, source.values, values, shape, dtype);
  return new Tensor(backend, backend.upload(values, dtype, shape), shape, dtype);
}

/** The largest finite value of each dtype; larger magnitudes round to ±Infinity. */
const FINITE_MAX: Record<DType, number> = {
  float32: 3.4028234663852886e38,
  float16: 65504,
  int8: 127,
  float8e4m3: E4M3_MAX,
};

/**
 * Rounds values in place onto a quantized dtype's grid, the rule for creating `int8` and
 * `float8e4m3` tensors from numbers (these hold quantized data as stored; `la.quantize`
 * makes them from real data with scales):
 * - int8: the nearest integer (ties to even); outside [−128, 127], NaN or ±∞ (none of which
 *   int8 holds) is an {@link ArgumentError}.
 * - float8e4m3: the nearest E4M3 value (ties to even); a magnitude over 448 or ±∞ (E4M3FN
 *   has no infinities) is an ArgumentError; NaN stays NaN.
 */
function toQuantGrid(op: string, values: Float32Array, shape: Shape, dtype: QuantDType): void {
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    const bad = dtype === "int8"
      ? !(x >= -128.5 && x <= 127.5) || roundHalfEven(x) < -128 || roundHalfEven(x) > 127
      : Math.abs(x) > E4M3_MAX;
    if (bad) {
      const range = dtype === "int8"
        ? "integers in [-128, 127]"
        : "finite values up to ±448, or NaN";
      throw new ArgumentError(
        `${op}: ${x} at index ${fmt(unravel(i, shape))} is outside the range of ${dtype} ` +
          `(${range}); quantize real data with la.quantize`,
      );
    }
    values[i] = dtype === "int8" ? roundHalfEven(x) : decodeE4M3(encodeE4M3(x));
  }
}

function rangeError(op: string, x: number, where: string, dtype: DType): ArgumentError {
  return new ArgumentError(
    `${op}: ${x}${where} is outside the range of ${dtype} (finite values up to ` +
      `±${FINITE_MAX[dtype]}) and would become ${x > 0 ? "" : "-"}Infinity; ` +
      `scale the data, use a wider dtype, or pass ±Infinity explicitly`,
  );
}

/**
 * The rule for out-of-range input: a finite number whose conversion to the dtype overflows is
 * an ArgumentError naming it and its index; ±Infinity and NaN given explicitly pass through.
 */
function checkInRange(
  op: string,
  source: ArrayLike<number>,
  converted: Float32Array,
  shape: Shape,
  dtype: DType,
): void {
  for (let i = 0; i < converted.length; i++) {
    const c = converted[i];
    if ((c === Infinity || c === -Infinity) && Number.isFinite(Number(source[i]))) {
      throw rangeError(op, Number(source[i]), ` at index ${fmt(unravel(i, shape))}`, dtype);
    }
  }
}

/** The multi-index of flat index `i` in a row-major tensor of `shape`. */
function unravel(i: number, shape: Shape): number[] {
  const idx = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
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
  options: CreationOptions & { shape?: readonly number[] } = {},
): Tensor {
  const opts = creationOptions<CreationOptions & { shape?: readonly number[] }>(
    "tensor",
    options,
    ["shape"],
  );
  let source: ArrayLike<number>;
  let shape: Shape;
  if (typeof data === "number") {
    source = [data];
    shape = [];
  } else if (isFlat(data)) {
    source = flatNumbers(data);
    shape = [source.length];
  } else if (Array.isArray(data)) {
    const inferred: number[] = [];
    let level: unknown = data;
    while (Array.isArray(level)) {
      inferred.push(level.length);
      level = level[0];
    }
    const flat: number[] = [];
    flatten(data, inferred, 0, flat);
    source = flat;
    shape = inferred;
  } else {
    throw new ArgumentError(
      `tensor: data must be a number, an array of numbers, nested arrays or a numeric typed ` +
        `array, got ${show(data)}`,
    );
  }
  const values = Float32Array.from(source);
  if (opts.shape !== undefined) {
    const s = checkShape([...opts.shape], "tensor");
    if (sizeOf(s) !== values.length) {
      throw new ShapeError(
        `tensor: shape ${fmt(s)} needs ${sizeOf(s)} values, got ${values.length}`,
      );
    }
    shape = s;
  }
  return fromValues(values, shape, opts, { op: "tensor", values: source });
}

function isFlat(data: unknown): boolean {
  if (ArrayBuffer.isView(data)) return true;
  return Array.isArray(data) && (data.length === 0 || typeof data[0] === "number");
}

/** A flat array or typed array whose elements are all numbers (no strings, no BigInts). */
function flatNumbers(data: unknown): ArrayLike<number> {
  if (ArrayBuffer.isView(data)) {
    if (
      data instanceof DataView || data instanceof BigInt64Array || data instanceof BigUint64Array
    ) {
      throw new ArgumentError(
        `tensor: expected a numeric typed array (Float32Array, Int32Array, ...), got ${data.constructor.name} (convert BigInts to numbers first)`,
      );
    }
    return data as unknown as ArrayLike<number>;
  }
  const a = data as unknown[];
  for (let i = 0; i < a.length; i++) {
    if (typeof a[i] !== "number") {
      throw new ArgumentError(`tensor: element ${i} is not a number: ${show(a[i])}`);
    }
  }
  return a as number[];
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
  return filled("full", shape, value, opts);
}

/** A tensor of zeros. */
export function zeros(shape: readonly number[], opts: CreationOptions = {}): Tensor {
  return filled("zeros", shape, 0, opts);
}

/** A tensor of ones. */
export function ones(shape: readonly number[], opts: CreationOptions = {}): Tensor {
  return filled("ones", shape, 1, opts);
}

function filled(op: string, shape: readonly number[], value: number, options: unknown): Tensor {
  const opts = creationOptions(op, options);
  if (typeof value !== "number") {
    throw new ArgumentError(`${op}: value must be a number, got ${show(value)}`);
  }
  const s = checkShape(shapeArray(op, shape), op);
  const dtype = checkDType(opts.dtype ?? "float32", op);
  if (isQuantDType(dtype)) {
    toQuantGrid(op, Float32Array.of(value), [], dtype); // refuses before allocating
  } else {
    const stored = dtype === "float16" ? Math.f16round(value) : Math.fround(value);
    if (Number.isFinite(value) && !Number.isFinite(stored)) throw rangeError(op, value, "", dtype);
  }
  return fromValues(new Float32Array(sizeOf(s)).fill(value), s, opts);
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
  options: CreationOptions & { seed: number },
): Tensor {
  const opts = creationOptions<CreationOptions & { seed: number }>("randn", options, ["seed"]);
  if (typeof opts.seed !== "number" || !Number.isFinite(opts.seed)) {
    throw new ArgumentError(`randn: expected a finite numeric seed, got ${show(opts.seed)}`);
  }
  const s = checkShape(shapeArray("randn", shape), "randn");
  return fromValues(normals(sizeOf(s), opts.seed), s, opts);
}

/** A copy of `shape` as an array, or {@link ShapeError} when it is none. */
function shapeArray(op: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) {
    throw new ShapeError(`${op}: shape must be an array of sizes, got ${show(shape)}`);
  }
  return [...shape];
}
