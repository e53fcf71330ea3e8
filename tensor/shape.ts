import { LimitError, ShapeError, show } from "./errors.ts";

/** A tensor shape: a list of non-negative integer dimensions. */
export type Shape = readonly number[];

/** Number of elements of a shape. */
export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * The most elements one tensor may have: 2³¹ (8 GiB of float32). JavaScript's typed arrays
 * and WebGPU buffers end near here (a WebGPU device refuses less, by its `maxBufferSize`,
 * unless the tensor can be stored in parts); a shape over it is refused before anything is
 * allocated, whatever the backend.
 */
export const MAX_ELEMENTS = 2 ** 31;

/** Throws {@link LimitError} when `shape` has more than {@link MAX_ELEMENTS} elements. */
export function checkSize(shape: Shape, what: string): void {
  const n = sizeOf(shape);
  if (n > MAX_ELEMENTS) {
    throw new LimitError(
      `${what}: shape ${fmt(shape)} has ${n} elements, over the ${MAX_ELEMENTS} (2^31) one ` +
        `tensor may hold`,
    );
  }
}

/**
 * Throws {@link ShapeError} unless every dimension is a non-negative safe integer, and
 * {@link LimitError} over {@link MAX_ELEMENTS} elements.
 */
export function checkShape(shape: unknown, what = "shape"): Shape {
  if (!Array.isArray(shape)) {
    throw new ShapeError(`${what}: expected an array of dimensions, got ${show(shape)}`);
  }
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new ShapeError(
        `${what}: expected non-negative integer dimensions, got ${show(shape)}`,
      );
    }
  }
  checkSize(shape as Shape, what);
  return shape as Shape;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** `[a, b, c]` for messages. */
export function fmt(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

/**
 * NumPy broadcasting of two shapes; throws {@link ShapeError} naming both, and
 * {@link LimitError} when the result would exceed {@link MAX_ELEMENTS}.
 */
export function broadcastShapes(a: Shape, b: Shape, op = "broadcast"): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${op}: shapes ${fmt(a)} and ${fmt(b)} cannot be broadcast together`);
    }
    out[i] = da === 1 ? db : da;
  }
  checkSize(out, op);
  return out;
}

/** Normalises a possibly negative axis; throws {@link ShapeError} when out of range. */
export function normAxis(axis: number, rank: number, op: string): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new ShapeError(
      `${op}: axis ${show(axis)} is out of range (or not an integer) for a tensor of rank ${rank}`,
    );
  }
  return axis < 0 ? axis + rank : axis;
}
