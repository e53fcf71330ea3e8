/**
 * The library's error classes. Every error the public API throws on purpose extends
 * {@link LeanattnError}, so callers can tell "you asked for something invalid" from a bug.
 * Messages say what was expected and what was given.
 *
 * @module
 */

/** Base class of every error thrown on purpose by leanattn. */
export class LeanattnError extends Error {
  /** Creates the error; `name` is the subclass name. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A tensor's shape (rank, a dimension, broadcasting) does not fit the operation. */
export class ShapeError extends LeanattnError {}

/** A dtype is unknown or dtypes that must agree do not. */
export class DTypeError extends LeanattnError {}

/** The inputs of one operation live on different backends. */
export class BackendMismatchError extends LeanattnError {}

/** A tensor was used after `dispose()`. */
export class DisposedTensorError extends LeanattnError {}

/** A backend cannot be created (no WebGPU adapter, ...); the message says why. */
export class BackendUnavailableError extends LeanattnError {}

/** The GPU device was lost or destroyed; tensors on it cannot be used any more. */
export class DeviceLostError extends LeanattnError {}

/** A device limit would be exceeded and the library cannot work around it. */
export class LimitError extends LeanattnError {}

/** An option has an invalid value (e.g. `tileSize: 0`, `kvLens` of the wrong length). */
export class ArgumentError extends LeanattnError {}

/**
 * A value as text for an error message. Never throws (symbols, arrays holding symbols and
 * objects whose `toString` throws are all shown), so building a message cannot replace the
 * intended error with a `TypeError`.
 */
export function show(v: unknown): string {
  try {
    if (Array.isArray(v)) return `[${v.map(show).join(", ")}]`;
    if (typeof v === "symbol") return v.toString();
    return String(v);
  } catch {
    return `(a ${typeof v})`;
  }
}
