/**
 * Tensor storage of the WebGPU runtime: pooled buffers, uploads, storage in parts across
 * buffers, scratch and release.
 *
 * `queue.writeBuffer` runs before any command buffer submitted after it, including the
 * pending encoder recorded *before* the write. So a buffer the pending encoder reads must not
 * receive a queue write until that encoder is submitted: buffers released while the pending
 * encoder uses them wait in a side pool that only GPU-written allocations (`alloc`) may take
 * from; uploads and scratch take from the main pool only.
 *
 * @module
 */
import type { DataId, MemoryInfo, StoragePart } from "../backend.ts";
import type { GpuFeatures } from "./context.ts";
import { bytesPerElement, type DType } from "../../tensor/dtype.ts";
import { encodeE4M3 } from "../../tensor/float8.ts";
import { DisposedTensorError, LeanattnError, LimitError } from "../../tensor/errors.ts";
import type { Shape } from "../../tensor/shape.ts";
import { BufferPool, POOL_USAGE, sizeClass } from "./_pool.ts";
import { cutPart, type PartLayout, partLayout } from "./_parts.ts";
import { GpuData, GpuParts } from "./_runtime_data.ts";
import type { GpuErrors } from "./_runtime_errors.ts";

const round4 = (n: number) => Math.ceil(n / 4) * 4;

/**
 * Values (on `dtype`'s grid) as the device stores them: f16 halves where `shader-f16` is
 * granted, else f32; int8 as bytes and float8e4m3 as its codes, four to a u32 word in
 * little-endian order (byte `i` of the tensor is bits `8·(i % 4)` of word `i / 4`).
 */
function storedArray(values: Float32Array, dtype: DType, f16: boolean): StoredArray {
  if (dtype === "float16" && f16) return new Float16Array(values);
  if (dtype === "int8") return Int8Array.from(values);
  if (dtype === "float8e4m3") return Uint8Array.from(values, encodeE4M3);
  return values;
}
type StoredArray = Float32Array | Float16Array | Int8Array | Uint8Array;

/** The buffers and tensor storage of one device. */
export class GpuStorage {
  readonly #errors: GpuErrors;
  #pool: BufferPool;
  /** Released while the pending encoder may read them: reusable only as GPU outputs. */
  #gpuOnly = new Map<number, GPUBuffer[]>();
  #gpuOnlyBytes = 0;
  #live = new Set<GpuData | GpuParts>();
  /** Tensors over this many bytes are stored in parts across buffers (at most one binding). */
  readonly partBytes: number;
  #liveBytes = 0;
  #owner = new WeakMap<GPUBuffer, GpuData>();
  /** Buffers the pending encoder binds (see the module notes). */
  #pendingUse = new Set<GPUBuffer>();
  #scratchInFlight: GPUBuffer[] = [];
  /** Scratch of the pending commands at an automatic submission (see `submitted`). */
  #scratchDeferred: GPUBuffer[] = [];

  constructor(
    readonly device: GPUDevice,
    readonly features: GpuFeatures,
    errors: GpuErrors,
    partBytes?: number,
  ) {
    this.#errors = errors;
    const bind = device.limits.maxStorageBufferBindingSize;
    this.partBytes = Math.min(bind, partBytes ?? bind);
    // Idle buffers kept for reuse: up to the largest buffer, within [64 MiB, 1 GiB].
    this.#pool = new BufferPool(Math.min(2 ** 30, Math.max(2 ** 26, device.limits.maxBufferSize)));
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** A new (unpooled) GPU buffer; throws {@link LimitError} over `maxBufferSize`. */
  create(size: number, usage: number, what: string): GPUBuffer {
    const max = this.limits.maxBufferSize;
    if (size > max) {
      throw new LimitError(
        `${what}: needs a GPU buffer of ${size} bytes, but maxBufferSize is ${max}`,
      );
    }
    const b: GPUBuffer = this.#errors.scoped(
      what,
      () => this.device.createBuffer({ size, usage, label: what }),
      () => this.#invalid.add(b),
    );
    return b;
  }

  /** Buffers whose creation failed (out of memory): destroyed on release, never pooled. */
  #invalid = new WeakSet<GPUBuffer>();

  /** Size class, shrunk to the request where the class alone would break a limit. */
  #classOf(bytes: number): number {
    const cls = sizeClass(bytes);
    const exact = Math.max(16, Math.ceil(bytes / 16) * 16);
    const { maxStorageBufferBindingSize: bind, maxBufferSize: max } = this.limits;
    if (cls > bind && exact <= bind) return exact;
    if (cls > max && exact <= max) return exact;
    return cls;
  }

  /** A buffer of at least `bytes`; `gpuWritten` buffers may come from the side pool. */
  #acquire(bytes: number, gpuWritten: boolean, what: string): GPUBuffer {
    const size = this.#classOf(bytes);
    let b = this.#pool.take(size);
    if (!b && gpuWritten) {
      b = this.#gpuOnly.get(size)?.pop();
      if (b) this.#gpuOnlyBytes -= size;
    }
    if (b) {
      this.#reused++;
      return b;
    }
    this.#created++;
    return this.create(size, POOL_USAGE, what);
  }

  #created = 0;
  #reused = 0;

  /** Pooled-buffer requests served by a new buffer (`created`) or from the pool (`reused`). */
  get poolStats(): { created: number; reused: number } {
    return { created: this.#created, reused: this.#reused };
  }

  /** Returns a buffer: to the side pool while the pending encoder uses it, else the pool. */
  #recycle(b: GPUBuffer): void {
    if (this.#invalid.has(b)) {
      b.destroy();
      return;
    }
    if (this.#pendingUse.has(b)) {
      let list = this.#gpuOnly.get(b.size);
      if (!list) this.#gpuOnly.set(b.size, list = []);
      list.push(b);
      this.#gpuOnlyBytes += b.size;
    } else {
      this.#pool.give(b);
    }
  }

  #track(buffer: GPUBuffer, dtype: DType, elements: number): GpuData {
    const d = new GpuData(buffer, dtype, elements, elements * this.#storageBytes(dtype));
    this.#live.add(d);
    this.#liveBytes += buffer.size;
    this.#owner.set(buffer, d);
    return d;
  }

  #storageBytes(dtype: DType): number {
    return dtype === "float16" && !this.features.f16 ? 4 : bytesPerElement(dtype);
  }

  /** The storage of a whole tensor; throws for parts, foreign or released ids. */
  data(id: DataId): GpuData {
    const d = id as GpuData;
    if (id instanceof GpuParts) {
      if (id.released) throw new DisposedTensorError("webgpu: storage was released");
      throw new LimitError(this.#partsMessage("a kernel", id));
    }
    if (!(d instanceof GpuData)) {
      throw new LeanattnError("webgpu: storage id does not belong to a WebGPU backend");
    }
    if (d.released) throw new DisposedTensorError("webgpu: storage was released");
    return d;
  }

  buffer(id: DataId): GPUBuffer {
    return this.data(id).buffer;
  }

  byteLength(id: DataId): number {
    return this.data(id).byteLength;
  }

  alloc(elements: number, dtype: DType): DataId {
    this.#errors.check();
    const bytes = elements * this.#storageBytes(dtype);
    return this.#track(this.#acquire(bytes, true, `alloc ${elements} ${dtype}`), dtype, elements);
  }

  /**
   * Storage for a tensor of `shape` that the GPU will fill (copies or kernels), in parts across
   * buffers like {@link GpuRuntime.upload} when over {@link GpuRuntime.partBytes}; contents
   * unspecified. For gigabyte inputs made on the GPU (the benchmark's K/V), which `upload`
   * could only take as host arrays as large.
   */
  allocShaped(shape: Shape, dtype: DType): DataId {
    this.#errors.check();
    const n = shape.reduce((a, b) => a * b, 1);
    const per = this.#storageBytes(dtype);
    const layout = n * per > this.partBytes
      ? partLayout(shape, per, this.partBytes, this.#partLimitName())
      : null;
    if (!layout) return this.alloc(n, dtype);
    return this.allocParts(layout, dtype);
  }

  /**
   * Storage in the parts of `layout` that the GPU will fill (e.g. per-row scales cut where
   * their data tensor is cut); contents unspecified.
   */
  allocParts(layout: PartLayout, dtype: DType): DataId {
    this.#errors.check();
    const n = layout.outer * layout.rows * layout.row;
    const per = this.#storageBytes(dtype);
    const parts: GpuData[] = [];
    try {
      for (const [n0, n1] of layout.ranges) {
        const elements = layout.outer * (n1 - n0) * layout.row;
        const what = `alloc part [${n0}, ${n1}) of ${n} ${dtype}`;
        const buffer = this.#acquire(elements * per, true, what);
        const part = new GpuData(buffer, dtype, elements, elements * per);
        parts.push(part);
        this.#liveBytes += part.buffer.size;
        this.#owner.set(part.buffer, part);
      }
    } catch (e) {
      for (const p of parts) this.#releasePart(p);
      throw e;
    }
    const s = new GpuParts(parts, layout, dtype, n, n * per);
    this.#live.add(s);
    return s;
  }

  scratch(bytes: number): GPUBuffer {
    this.#errors.check();
    const b = this.#acquire(bytes, false, `scratch ${bytes} bytes`);
    this.#scratchInFlight.push(b);
    return b;
  }

  scratchFrom(data: ArrayBufferView): GPUBuffer {
    const b = this.scratch(data.byteLength);
    this.#write(b, data);
    return b;
  }

  #write(b: GPUBuffer, data: ArrayBufferView): void {
    if (data.byteLength === 0) return;
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 || !(data.buffer instanceof ArrayBuffer)) {
      const padded = new Uint8Array(round4(bytes.byteLength));
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(b, 0, bytes as Uint8Array<ArrayBuffer>);
  }

  /**
   * Stores float32 values (already rounded for float16) as `dtype`. Given its `shape`, a
   * tensor over {@link GpuRuntime.partBytes} is stored in parts across buffers along its second-to-last
   * axis; one that cannot be cut into parts must fit one buffer.
   */
  upload(values: Float32Array, dtype: DType, shape?: Shape): DataId {
    this.#errors.check();
    const n = values.length;
    const per = this.#storageBytes(dtype);
    const bytes = n * per;
    if (shape && bytes > this.partBytes) {
      const layout = partLayout(shape, per, this.partBytes, this.#partLimitName());
      if (layout) return this.#uploadParts(values, dtype, layout);
    }
    const d = this.#track(this.#acquire(bytes, false, `upload ${n} ${dtype}`), dtype, n);
    this.#write(d.buffer, storedArray(values, dtype, this.features.f16));
    return d;
  }

  #partLimitName(): string {
    const bind = this.limits.maxStorageBufferBindingSize;
    return this.partBytes < bind
      ? `the part size (partBytes, below maxStorageBufferBindingSize ${bind})`
      : "maxStorageBufferBindingSize";
  }

  #partsMessage(op: string, s: GpuParts): string {
    return `${op}: an input of ${s.byteLength} bytes exceeds ${this.#partLimitName()} ` +
      `${this.partBytes} and is stored across ${s.parts.length} buffers; only the attention ` +
      `ops (flashAttention, leanAttention) accept K/V stored in parts across buffers`;
  }

  #uploadParts(values: Float32Array, dtype: DType, layout: PartLayout): GpuParts {
    const src = storedArray(values, dtype, this.features.f16);
    const per = this.#storageBytes(dtype);
    const parts: GpuData[] = [];
    try {
      for (const [n0, n1] of layout.ranges) {
        const elements = layout.outer * (n1 - n0) * layout.row;
        const what = `upload part [${n0}, ${n1}) of ${values.length} ${dtype}`;
        const buffer = this.#acquire(elements * per, false, what);
        const part = new GpuData(buffer, dtype, elements, elements * per);
        parts.push(part);
        this.#liveBytes += buffer.size;
        this.#owner.set(buffer, part);
        this.#write(buffer, cutPart(src, layout, n0, n1));
      }
    } catch (e) {
      for (const p of parts) this.#releasePart(p);
      throw e;
    }
    const s = new GpuParts(parts, layout, dtype, values.length, values.length * per);
    this.#live.add(s);
    return s;
  }

  #releasePart(p: GpuData): void {
    p.released = true;
    this.#liveBytes -= p.buffer.size;
    this.#owner.delete(p.buffer);
    if (!this.#errors.lost) this.#recycle(p.buffer);
  }

  /**
   * The parts of a tensor stored in parts, viewed with `shape`, or null when it is stored whole. Throws
   * {@link LimitError} when `shape` does not keep the parts' axis and the last axis (a
   * reshape that moved them).
   */
  storageParts(id: DataId, shape: Shape): StoragePart[] | null {
    if (!(id instanceof GpuParts)) return null;
    if (id.released) throw new DisposedTensorError("webgpu: storage was released");
    const { rows, row, ranges } = id.layout;
    if (shape.length < 2 || shape[shape.length - 2] !== rows || shape[shape.length - 1] !== row) {
      throw new LimitError(
        `webgpu: a tensor of ${id.byteLength} bytes is stored across ${ranges.length} ` +
          `buffers (over ${this.#partLimitName()} ${this.partBytes}) in parts along an axis of ` +
          `${rows} with rows of ${row}; viewed as [${shape.join(", ")}] it no longer has ` +
          `those last two axes, so no op can use it (reshape it back)`,
      );
    }
    return id.parts.map((p, c) => ({ id: p, n0: ranges[c][0], n1: ranges[c][1] }));
  }

  /** Throws {@link LimitError} naming `op` if `id` is stored in parts across buffers. */
  whole(op: string, id: DataId): void {
    if (id instanceof GpuParts && !id.released) throw new LimitError(this.#partsMessage(op, id));
  }

  /** Frees a tensor's storage (returns its buffer to the pool). */
  release(id: DataId): void {
    if (id instanceof GpuParts) {
      if (id.released) return;
      id.released = true;
      this.#live.delete(id);
      for (const p of id.parts) this.#releasePart(p);
      return;
    }
    const d = id as GpuData;
    if (!(d instanceof GpuData) || d.released) return;
    d.released = true;
    this.#live.delete(d);
    this.#liveBytes -= d.buffer.size;
    this.#owner.delete(d.buffer);
    if (this.#errors.lost) return;
    this.#recycle(d.buffer);
  }

  /** Bytes in live tensors and in the pools. */
  memory(): MemoryInfo {
    return {
      liveBytes: this.#liveBytes,
      pooledBytes: this.#pool.pooledBytes + this.#gpuOnlyBytes,
      liveCount: this.#live.size,
    };
  }

  /** Marks a buffer as bound by the pending encoder; returns the tensor it holds, if any. */
  use(b: GPUBuffer): GpuData | undefined {
    this.#pendingUse.add(b);
    return this.#owner.get(b);
  }

  /**
   * Recycles what waited for a submission. After an automatic submission (`auto`, see
   * `GpuEncoder`) the pending scratch waits for the next one: the op that recorded it may
   * bind it again in a later dispatch, which a `writeBuffer` into a reused buffer would
   * overtake.
   */
  submitted(auto: boolean): void {
    this.#pendingUse.clear();
    for (const b of this.#scratchDeferred) this.#pool.give(b);
    this.#scratchDeferred = [];
    if (auto) this.#scratchDeferred = this.#scratchInFlight;
    else for (const b of this.#scratchInFlight) this.#pool.give(b);
    this.#scratchInFlight = [];
    for (const list of this.#gpuOnly.values()) for (const b of list) this.#pool.give(b);
    this.#gpuOnly.clear();
    this.#gpuOnlyBytes = 0;
  }

  /** Destroys the idle buffers (teardown). */
  clear(): void {
    this.#pool.clear();
  }
}
