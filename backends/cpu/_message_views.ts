/**
 * Typed arrays in a message to a `node:worker_threads` Worker travel as their buffer and
 * place, and are made again on the other side. Deno 2.9.6 drops a message silently (no
 * error, no `messageerror`; the port then delivers nothing more) when it holds a typed array
 * of about 16 MiB or more, shared or not, while the same data as a `SharedArrayBuffer`, a
 * `WebAssembly.Memory` or a short view of the same buffer goes through (bench/NOTES.md,
 * session (28)). The buffers themselves are posted, so shared ones stay shared.
 *
 * @module
 */

/** A typed array as it travels. */
interface ViewRecord {
  __view: string;
  buffer: ArrayBufferLike;
  byteOffset: number;
  length: number;
}

type ViewConstructor = new (b: ArrayBufferLike, offset: number, length: number) => unknown;

const CONSTRUCTORS: Record<string, ViewConstructor> = {
  Float64Array,
  Float32Array,
  Float16Array: Float16Array as unknown as ViewConstructor,
  Int32Array,
  Uint32Array,
  Int16Array,
  Uint16Array,
  Int8Array,
  Uint8Array,
};

/** `x` with every typed array in its plain objects and arrays replaced by its record. */
export function packViews(x: unknown): unknown {
  if (ArrayBuffer.isView(x) && !(x instanceof DataView)) {
    const name = x.constructor.name;
    if (!(name in CONSTRUCTORS)) return x;
    const a = x as unknown as { buffer: ArrayBufferLike; byteOffset: number; length: number };
    return { __view: name, buffer: a.buffer, byteOffset: a.byteOffset, length: a.length };
  }
  if (Array.isArray(x)) return x.map(packViews);
  if (x !== null && typeof x === "object" && Object.getPrototypeOf(x) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(x)) out[k] = packViews(v);
    return out;
  }
  return x;
}

/** The inverse of {@link packViews}. */
export function unpackViews(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(unpackViews);
  if (x !== null && typeof x === "object" && Object.getPrototypeOf(x) === Object.prototype) {
    const r = x as Partial<ViewRecord>;
    if (typeof r.__view === "string" && r.buffer && r.__view in CONSTRUCTORS) {
      return new CONSTRUCTORS[r.__view](r.buffer, r.byteOffset!, r.length!);
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(x)) out[k] = unpackViews(v);
    return out;
  }
  return x;
}
