/**
 * The Tensor: a shape, a dtype and a handle to backend storage. Tensors are immutable;
 * `reshape` shares storage (reference counted), ops return new tensors. Ops are synchronous
 * (on WebGPU they encode and submit); only `data()`, `toArray()`, `toNdarray()` and `to()`
 * wait for results.
 *
 * @module
 */
import { JUPYTER_DISPLAY, tensorBundle } from "./_display.ts";
import type { DType } from "./dtype.ts";
import { ArgumentError, DisposedTensorError, ShapeError, show } from "./errors.ts";
import type { NdArray } from "./ndarray_types.ts";
import { checkShape, fmt, type Shape, sizeOf } from "./shape.ts";
import type { DataId, TensorBackend } from "./storage.ts";

/** A nested array of numbers as returned by {@link Tensor.toArray}. */
export type NestedArray = number | NestedArray[];

/** Reference-counted backend storage shared by a tensor and its reshapes. */
class Storage {
  refs = 1;
  constructor(readonly backend: TensorBackend, readonly id: DataId) {}
  release(): void {
    if (--this.refs === 0) this.backend.release(this.id);
  }
}

// Tensors dropped without dispose() give their storage back when collected.
const registry = new FinalizationRegistry<Storage>((s) => {
  try {
    s.release();
  } catch {
    // The backend may be gone (destroyed device); nothing left to free.
  }
});

/** An n-dimensional array on a backend. Create with `tensor`, `zeros`, `randn`, ... */
export class Tensor {
  /** Row-major shape. */
  readonly shape: Shape;
  /** Storage dtype; arithmetic is float32. */
  readonly dtype: DType;
  /** The backend holding the data. */
  readonly backend: TensorBackend;
  #storage: Storage | null;

  /** @internal Use the creation functions; this wraps storage a backend returned. */
  constructor(backend: TensorBackend, id: DataId, shape: Shape, dtype: DType, share?: Storage) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.backend = backend;
    if (share) {
      share.refs++;
      this.#storage = share;
    } else {
      this.#storage = new Storage(backend, id);
    }
    registry.register(this, this.#storage, this);
  }

  /** Number of elements. */
  get size(): number {
    return sizeOf(this.shape);
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** Whether `dispose()` was called. */
  get isDisposed(): boolean {
    return this.#storage === null;
  }

  /** @internal The backend storage; throws {@link DisposedTensorError} after dispose. */
  get id(): DataId {
    return this.#live().id;
  }

  #live(): Storage {
    if (!this.#storage) {
      throw new DisposedTensorError(
        `tensor of shape ${fmt(this.shape)} (${this.dtype}) was used after dispose()`,
      );
    }
    return this.#storage;
  }

  /** The values as float32, in row-major order. */
  data(): Promise<Float32Array> {
    const s = this.#live();
    return s.backend.read(s.id, this.dtype, this.size);
  }

  /** The values as nested arrays (a number for rank 0). */
  async toArray(): Promise<NestedArray> {
    return nest(await this.data(), this.shape);
  }

  /** The values as a contiguous float32 ndarray (see `toNdarray` in tensor/ndarray.ts). */
  async toNdarray(): Promise<NdArray> {
    const { ndarrayOf } = await import("./_ndarray_out.ts");
    return ndarrayOf(await this.data(), this.shape);
  }

  /** A copy of this tensor on another backend (same shape and dtype). */
  async to(backend: TensorBackend): Promise<Tensor> {
    const b = backend as Partial<TensorBackend> | null;
    if (!b || typeof b !== "object" || typeof b.upload !== "function") {
      throw new ArgumentError(`to: expected a backend (cpu(), await webgpu()), got ${show(b)}`);
    }
    const values = await this.data();
    return new Tensor(
      backend,
      backend.upload(values, this.dtype, this.shape),
      this.shape,
      this.dtype,
    );
  }

  /** The same data seen with another shape (one dimension may be -1). Shares storage. */
  reshape(shape: readonly number[]): Tensor {
    const s = this.#live();
    if (!Array.isArray(shape)) {
      throw new ArgumentError(`reshape: shape must be an array of sizes, got ${show(shape)}`);
    }
    const dims = [...shape];
    // Sizes are numbers before any arithmetic on them (a BigInt would throw a raw TypeError).
    const at = dims.findIndex((d) => typeof d !== "number");
    if (at >= 0) {
      throw new ArgumentError(
        `reshape: shape must be an array of numbers (one may be -1); entry ${at} is a ` +
          `${typeof dims[at]} (${show(dims[at])})`,
      );
    }
    const free = dims.indexOf(-1);
    if (free >= 0 && dims.lastIndexOf(-1) === free) {
      const rest = sizeOf(dims.filter((_, i) => i !== free));
      if (rest > 0 && this.size % rest === 0) dims[free] = this.size / rest;
    }
    checkShape(dims, "reshape");
    if (sizeOf(dims) !== this.size) {
      throw new ShapeError(
        `reshape: cannot view ${fmt(this.shape)} (${this.size} elements) as ${fmt(shape)}`,
      );
    }
    return new Tensor(s.backend, s.id, dims, this.dtype, s);
  }

  /** Frees the storage (when no reshape shares it). Idempotent. */
  dispose(): void {
    if (!this.#storage) return;
    registry.unregister(this);
    const s = this.#storage;
    this.#storage = null;
    s.release();
  }

  /**
   * The display hook of `deno jupyter`: a MIME bundle with the shape, dtype, backend and a
   * preview of the values (reads them; see tensor/_display.ts).
   */
  [JUPYTER_DISPLAY](): Promise<Record<string, string>> {
    return tensorBundle(this);
  }

  /** `Tensor(float32 [2, 3] on cpu)`. */
  toString(): string {
    return `Tensor(${this.dtype} ${fmt(this.shape)} on ${this.backend.name}${
      this.isDisposed ? ", disposed" : ""
    })`;
  }
}

function nest(values: Float32Array, shape: Shape): NestedArray {
  if (shape.length === 0) return values[0];
  const go = (offset: number, dim: number): NestedArray[] => {
    const n = shape[dim];
    const out: NestedArray[] = new Array(n);
    if (dim === shape.length - 1) {
      for (let i = 0; i < n; i++) out[i] = values[offset + i];
      return out;
    }
    const step = sizeOf(shape.slice(dim + 1));
    for (let i = 0; i < n; i++) out[i] = go(offset + i * step, dim + 1);
    return out;
  };
  return go(0, 0);
}
