/**
 * Validation shared by the ops: every op checks its inputs here before it calls the backend
 * exactly once, so backends never re-validate.
 *
 * @module
 */
import { type Backend, computeBackend } from "../backends/backend.ts";
import { checkComputeDType, type DType } from "../tensor/dtype.ts";
import {
  ArgumentError,
  BackendMismatchError,
  DTypeError,
  LeanattnError,
  show,
} from "../tensor/errors.ts";
import { fmt } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";

/**
 * Throws {@link ArgumentError} unless `t` is a Tensor, `DisposedTensorError` if it was
 * disposed and {@link DTypeError} if it holds quantized data (`int8`, `float8e4m3`: no op
 * computes on those; `la.dequantize` first); returns it typed.
 */
export function live(op: string, name: string, t: unknown): Tensor {
  const x = liveStorage(op, name, t);
  checkComputeDType(op, x.dtype, name);
  return x;
}

/** {@link live} for the ops that take quantized data as it is stored (`la.dequantize`). */
export function liveStorage(op: string, name: string, t: unknown): Tensor {
  if (!(t instanceof Tensor)) {
    throw new ArgumentError(`${op}: ${name} must be a Tensor, got ${describe(t)}`);
  }
  try {
    t.id; // throws DisposedTensorError after dispose()
  } catch (e) {
    if (e instanceof LeanattnError) throw e;
    // `instanceof` holds for a Proxy of a Tensor, whose private state it cannot reach.
    throw new ArgumentError(`${op}: ${name} must be a Tensor, got a Proxy of one`);
  }
  return t;
}

/** Throws {@link BackendMismatchError} unless every tensor lives on the first one's backend. */
export function sameBackend(op: string, ...ts: Tensor[]): Backend {
  const b = ts[0].backend;
  for (const t of ts) {
    if (t.backend !== b) {
      throw new BackendMismatchError(
        `${op}: inputs must be on one backend, got ${ts.map((x) => x.backend.name).join(", ")}`,
      );
    }
  }
  return computeBackend(op, b);
}

/** The compute backend `t` lives on (see `computeBackend`). */
export function backendOf(op: string, t: Tensor): Backend {
  return computeBackend(op, t.backend);
}

/** Throws {@link DTypeError} unless every tensor has the first one's dtype. */
export function sameDType(op: string, ...ts: Tensor[]): DType {
  const d = ts[0].dtype;
  if (ts.some((t) => t.dtype !== d)) {
    throw new DTypeError(
      `${op}: inputs must have one dtype, got ${
        ts.map((t) => `${t.dtype} ${fmt(t.shape)}`).join(" and ")
      } (use cast())`,
    );
  }
  return d;
}

/** A short description of an unexpected argument for messages. */
export function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return `an array of length ${x.length}`;
  if (typeof x === "object") return (x as object).constructor?.name ?? "an object";
  return `${typeof x} ${show(x)}`;
}
