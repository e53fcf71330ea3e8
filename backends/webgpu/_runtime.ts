/**
 * The WebGPU runtime behind the backend: the {@link GpuContext} every kernel file codes
 * against, plus storage (pooled buffers), readback, deferred error reporting and profiling.
 *
 * Three facts of WebGPU shape this file:
 *
 * - Ops are synchronous but GPU errors arrive as promises (`popErrorScope`). Buffer creation,
 *   pipeline creation, bind groups and submits run inside error scopes; a failure is stored and
 *   thrown (as {@link LimitError} or {@link LeanattnError}) by the next op or read, instead of
 *   being printed as "uncaptured" and silently skipping the dispatch.
 * - `queue.writeBuffer` runs before any command buffer submitted after it, including the
 *   pending encoder recorded *before* the write. So a buffer the pending encoder reads must not
 *   receive a queue write until that encoder is submitted: buffers released while the pending
 *   encoder uses them wait in a side pool that only GPU-written allocations (`alloc`) may take
 *   from; uploads and scratch take from the main pool only.
 * - A readback costs ~10 ms (Deno polls the device every 10 ms), so nothing here waits except
 *   `read` and `readTimings`.
 *
 * @module
 */
import type { DataId, MemoryInfo, StoragePart } from "../backend.ts";
import type { GpuBinding, GpuContext, GpuFeatures } from "./context.ts";
import { bytesPerElement, type DType } from "../../tensor/dtype.ts";
import {
  DeviceLostError,
  DisposedTensorError,
  LeanattnError,
  LimitError,
} from "../../tensor/errors.ts";
import { BufferPool, POOL_USAGE, sizeClass } from "./_pool.ts";
import { cutPart, type PartLayout, partLayout, placePart } from "./_parts.ts";
import type { Shape } from "../../tensor/shape.ts";

/** GPU storage of one tensor. */
export class GpuData {
  /** Set by `release`. */
  released = false;
  constructor(
    /** The (pooled, possibly larger) buffer. */
    readonly buffer: GPUBuffer,
    /** Storage dtype. */
    readonly dtype: DType,
    /** Element count. */
    readonly elements: number,
    /** Elements × stored bytes per element. */
    readonly byteLength: number,
  ) {}
}

/**
 * GPU storage of one tensor too large for one binding: `parts[c]` holds range `ranges[c]` of
 * the second-to-last axis (see _chunked.ts). Kernels never see it, only its parts.
 */
export class GpuParts {
  /** Set by `release`. */
  released = false;
  constructor(
    /** One ordinary storage per part, in axis order. */
    readonly parts: readonly GpuData[],
    /** How the tensor is cut. */
    readonly layout: PartLayout,
    /** Storage dtype. */
    readonly dtype: DType,
    /** Element count. */
    readonly elements: number,
    /** Elements × stored bytes per element. */
    readonly byteLength: number,
  ) {}
}

/** Dispatches recorded before the pending encoder is submitted on its own. */
export const MAX_PENDING_DISPATCHES = 64;

/** One compute pass's GPU time. */
export interface PassTiming {
  /** The label given to `dispatch`. */
  label: string;
  /** Milliseconds between the pass's begin and end timestamps. */
  ms: number;
  /**
   * The raw begin timestamp (ns, the device's timestamp clock): a multi-pass op's GPU time is
   * the last pass's `endNs` minus the first pass's `startNs` (a pass may stamp its begin before
   * it waits for the previous pass, so summing `ms` can double-count).
   */
  startNs?: number;
  /** The raw end timestamp (ns, same clock as `startNs`). */
  endNs?: number;
}

interface TimingBatch {
  labels: string[];
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  staging: GPUBuffer;
}

const round4 = (n: number) => Math.ceil(n / 4) * 4;

/** The GPU context and storage manager of one device. */
export class GpuRuntime implements GpuContext {
  readonly device: GPUDevice;
  readonly features: GpuFeatures;
  readonly limits: GPUSupportedLimits;
  readonly description: string;

  #pool: BufferPool;
  /** Released while the pending encoder may read them: reusable only as GPU outputs. */
  #gpuOnly = new Map<number, GPUBuffer[]>();
  #gpuOnlyBytes = 0;
  #live = new Set<GpuData | GpuParts>();
  /** Tensors over this many bytes are stored in parts across buffers (at most one binding). */
  readonly partBytes: number;
  #liveBytes = 0;
  #owner = new WeakMap<GPUBuffer, GpuData>();

  #encoder: GPUCommandEncoder | null = null;
  /**
   * The compute pass the pending dispatches share, open until the next submission or a
   * timestamped dispatch. A pass a dispatch cost 6.8 µs a dispatch on an H200 (wgpu/Vulkan),
   * dependent dispatches in one pass 2.0 µs (bench/_dispatch.ts, bench/NOTES.md); wgpu still
   * orders each dispatch after the writes of the ones before it (a usage scope a dispatch).
   */
  #pass: GPUComputePassEncoder | null = null;
  #dispatches = 0;
  /** Automatic submissions held back (see `holdSubmits`). */
  #hold = false;
  #pendingUse = new Set<GPUBuffer>();
  #scratchInFlight: GPUBuffer[] = [];
  /** Scratch of the pending commands at an automatic submission (see `#submit`). */
  #scratchDeferred: GPUBuffer[] = [];

  #pipelines = new Map<string, GPUComputePipeline>();
  #layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();
  /** Pipelines whose creation failed, with the error (they stay cached, failing fast). */
  #bad = new WeakMap<GPUComputePipeline, LeanattnError>();

  #checks = new Set<Promise<void>>();
  #error: LeanattnError | null = null;
  #lost: string | null = null;

  #profiling = false;
  /** Timing batches of the pending encoder, the last one filling (several while held). */
  #batches: TimingBatch[] = [];
  #timings: TimingBatch[] = [];

  constructor(
    device: GPUDevice,
    features: GpuFeatures,
    description: string,
    partBytes?: number,
  ) {
    this.device = device;
    this.features = features;
    this.limits = device.limits;
    this.description = description;
    const bind = device.limits.maxStorageBufferBindingSize;
    this.partBytes = Math.min(bind, partBytes ?? bind);
    // Idle buffers kept for reuse: up to the largest buffer, within [64 MiB, 1 GiB].
    this.#pool = new BufferPool(Math.min(2 ** 30, Math.max(2 ** 26, device.limits.maxBufferSize)));
    device.lost.then((info) => {
      this.#lost ??= info.message || `device lost (${info.reason})`;
    });
    device.addEventListener("uncapturederror", (e) => {
      e.preventDefault();
      this.#fail(
        new LeanattnError(`WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`),
      );
    });
  }

  // ---- state and errors ----------------------------------------------------------------

  /** Whether the device was lost or destroyed. */
  get lost(): boolean {
    return this.#lost !== null;
  }

  /** Throws {@link DeviceLostError} after loss, or the first stored GPU error (once). */
  check(): void {
    if (this.#lost !== null) {
      throw new DeviceLostError(`WebGPU device is gone: ${this.#lost}`);
    }
    const e = this.#error;
    if (e) {
      this.#error = null;
      throw e;
    }
  }

  #fail(e: LeanattnError): void {
    this.#error ??= e;
  }

  /** Runs `f` inside validation and out-of-memory error scopes; failures are stored. */
  #scoped<T>(what: string, f: () => T, onError?: (e: LeanattnError) => void): T {
    const d = this.device;
    d.pushErrorScope("out-of-memory");
    d.pushErrorScope("validation");
    let r: T;
    try {
      r = f();
    } finally {
      const v = d.popErrorScope();
      const o = d.popErrorScope();
      const p: Promise<void> = Promise.all([v, o]).then(([ve, oe]) => {
        const e = oe
          ? new LimitError(`${what}: out of GPU memory: ${oe.message}`)
          : ve
          ? new LeanattnError(`${what}: ${ve.message}`)
          : null;
        if (e) {
          onError?.(e);
          this.#fail(e);
        }
      }, (err) => {
        if (!this.#lost) this.#fail(new LeanattnError(`${what}: ${err}`));
      }).finally(() => this.#checks.delete(p));
      this.#checks.add(p);
    }
    return r;
  }

  /** Waits for every outstanding error scope, then throws what `check` throws. */
  async settle(): Promise<void> {
    while (this.#checks.size) await Promise.all([...this.#checks]);
    this.check();
  }

  // ---- buffers ---------------------------------------------------------------------------

  #create(size: number, usage: number, what: string): GPUBuffer {
    const max = this.limits.maxBufferSize;
    if (size > max) {
      throw new LimitError(
        `${what}: needs a GPU buffer of ${size} bytes, but maxBufferSize is ${max}`,
      );
    }
    const b: GPUBuffer = this.#scoped(
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
    return this.#create(size, POOL_USAGE, what);
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

  #data(id: DataId): GpuData {
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
    return this.#data(id).buffer;
  }

  byteLength(id: DataId): number {
    return this.#data(id).byteLength;
  }

  alloc(elements: number, dtype: DType): DataId {
    this.check();
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
    this.check();
    const n = shape.reduce((a, b) => a * b, 1);
    const per = this.#storageBytes(dtype);
    const layout = n * per > this.partBytes
      ? partLayout(shape, per, this.partBytes, this.#partLimitName())
      : null;
    if (!layout) return this.alloc(n, dtype);
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
    this.check();
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
    this.check();
    const n = values.length;
    const per = this.#storageBytes(dtype);
    const bytes = n * per;
    if (shape && bytes > this.partBytes) {
      const layout = partLayout(shape, per, this.partBytes, this.#partLimitName());
      if (layout) return this.#uploadParts(values, dtype, layout);
    }
    const d = this.#track(this.#acquire(bytes, false, `upload ${n} ${dtype}`), dtype, n);
    if (dtype === "float16" && this.features.f16) {
      this.#write(d.buffer, new Float16Array(values));
    } else {
      this.#write(d.buffer, values);
    }
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
    const half = dtype === "float16" && this.features.f16;
    const src = half ? new Float16Array(values) : values;
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
        const data = half
          ? cutPart(src as Float16Array, layout, n0, n1, (k) => new Float16Array(k))
          : cutPart(src as Float32Array, layout, n0, n1, (k) => new Float32Array(k));
        this.#write(buffer, data);
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
    if (!this.#lost) this.#recycle(p.buffer);
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
    if (this.#lost) return;
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

  // ---- pipelines and dispatch ------------------------------------------------------------

  pipeline(key: string, wgsl: () => string, entryPoint = "main"): GPUComputePipeline {
    const k = `${key}#${entryPoint}`;
    let p = this.#pipelines.get(k);
    if (p === undefined) {
      this.check();
      const code = wgsl();
      const made: GPUComputePipeline = this.#scoped(`pipeline ${key}`, () => {
        const module = this.device.createShaderModule({ code, label: key });
        return this.device.createComputePipeline({
          layout: "auto",
          compute: { module, entryPoint },
          label: key,
        });
      }, (e) => this.#bad.set(made, e));
      p = made;
      this.#pipelines.set(k, p);
    }
    return p;
  }

  /** Number of cached pipelines. */
  get pipelineCount(): number {
    return this.#pipelines.size;
  }

  #entry(b: GpuBinding, i: number, label: string): GPUBindGroupEntry {
    const maxBind = this.limits.maxStorageBufferBindingSize;
    if (b instanceof GPUBuffer) {
      this.#pendingUse.add(b);
      const owner = this.#owner.get(b);
      if (owner && owner.byteLength > maxBind) {
        throw new LimitError(
          `${label}: binding ${i} holds ${owner.byteLength} bytes, but ` +
            `maxStorageBufferBindingSize is ${maxBind}`,
        );
      }
      // A pooled buffer may be larger than its data; bind no more than the limit allows.
      return b.size > maxBind
        ? { binding: i, resource: { buffer: b, size: maxBind - (maxBind % 4) } }
        : { binding: i, resource: { buffer: b } };
    }
    this.#pendingUse.add(b.buffer);
    const size = b.size ?? b.buffer.size - (b.offset ?? 0);
    if (size > maxBind) {
      throw new LimitError(
        `${label}: binding ${i} spans ${size} bytes, but maxStorageBufferBindingSize is ${maxBind}`,
      );
    }
    return { binding: i, resource: { buffer: b.buffer, offset: b.offset, size: b.size } };
  }

  dispatch(
    pipeline: GPUComputePipeline,
    bindings: readonly GpuBinding[],
    workgroups: readonly [number, number?, number?],
    label = "dispatch",
  ): void {
    this.check();
    const bad = this.#bad.get(pipeline);
    if (bad) throw bad;
    const [x, y = 1, z = 1] = workgroups;
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxDim || y > maxDim || z > maxDim) {
      throw new LimitError(
        `${label}: dispatch of [${x}, ${y}, ${z}] workgroups exceeds ` +
          `maxComputeWorkgroupsPerDimension ${maxDim}`,
      );
    }
    if (x === 0 || y === 0 || z === 0) return;
    let layout = this.#layouts.get(pipeline);
    if (!layout) this.#layouts.set(pipeline, layout = pipeline.getBindGroupLayout(0));
    const entries = bindings.map((b, i) => this.#entry(b, i, label));
    const group = this.#scoped(
      label,
      () => this.device.createBindGroup({ layout: layout!, entries, label }),
    );
    const enc = this.#encoder ??= this.device.createCommandEncoder();
    // A timed dispatch gets a pass of its own (timestamps are written at pass boundaries);
    // the others share the open one.
    const timed = this.#profiling && this.features.timestamps;
    let pass: GPUComputePassEncoder;
    if (timed) {
      pass = this.#timedPass(enc, label);
    } else {
      pass = this.#pass ??= enc.beginComputePass({ label: "leanattn ops" });
    }
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    if (timed) pass.end();
    if (++this.#dispatches >= MAX_PENDING_DISPATCHES && !this.#hold) this.#submit(true);
  }

  /**
   * Holds automatic submissions back (`on`) so that a run of dispatches goes to the GPU as one
   * command buffer at the next `flush` — for benchmarks that must not let the GPU wait for
   * the CPU between calls. Scratch buffers are not recycled until then.
   */
  holdSubmits(on: boolean): void {
    this.#hold = on;
  }

  wgslType(dtype: DType): "f32" | "f16" {
    return dtype === "float16" && this.features.f16 ? "f16" : "f32";
  }

  /** Submits the pending encoder (if any) and recycles what waited for the submission. */
  flush(): void {
    this.#submit(false);
  }

  /**
   * Submits. An automatic submission (`auto`, every {@link MAX_PENDING_DISPATCHES}) can fall
   * between two dispatches of one op, which binds its scratch buffers again afterwards: were
   * they pooled now, a `writeBuffer` into a reused one (an upload, the next `scratchFrom`)
   * would run before that later dispatch and corrupt it. So they wait for the next submission.
   */
  #submit(auto: boolean): void {
    if (this.#lost) return;
    this.#endPass();
    const enc = this.#encoder;
    const batches = this.#batches;
    this.#encoder = null;
    this.#batches = [];
    this.#dispatches = 0;
    if (enc) {
      for (const batch of batches) {
        const n = batch.labels.length * 2;
        enc.resolveQuerySet(batch.querySet, 0, n, batch.resolve, 0);
        enc.copyBufferToBuffer(batch.resolve, 0, batch.staging, 0, n * 8);
        this.#timings.push(batch);
      }
      this.#scoped("submit", () => this.device.queue.submit([enc.finish()]));
    }
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

  /** Ends the shared compute pass, if one is open (before other commands or a submission). */
  #endPass(): void {
    const pass = this.#pass;
    this.#pass = null;
    pass?.end();
  }

  // ---- readback ----------------------------------------------------------------------------

  /** Reads `size` elements as float32 (waits for all work submitted so far). */
  async read(id: DataId, dtype: DType, size: number): Promise<Float32Array> {
    this.check();
    if (id instanceof GpuParts) return this.#readParts(id, dtype, size);
    const d = this.#data(id);
    if (size === 0) return new Float32Array(0);
    const native16 = dtype === "float16" && this.features.f16;
    const bytes = round4(size * (native16 ? 2 : 4));
    this.flush();
    const staging = this.#create(
      bytes,
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      "read staging",
    );
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(d.buffer, 0, staging, 0, bytes);
      this.#scoped("read", () => this.device.queue.submit([enc.finish()]));
      try {
        await staging.mapAsync(GPUMapMode.READ);
      } catch (e) {
        this.check();
        await this.settle();
        throw new LeanattnError(`webgpu read failed: ${e}`);
      }
      await this.settle();
      const raw = staging.getMappedRange();
      const out = native16
        ? Float32Array.from(new Float16Array(raw, 0, size))
        : new Float32Array(raw.slice(0, size * 4));
      staging.unmap();
      // GPUs produce NaNs with other payloads (NVIDIA: 0xffffffff); hand out JS's own NaN.
      for (let i = 0; i < out.length; i++) if (out[i] !== out[i]) out[i] = NaN;
      return out;
    } finally {
      staging.destroy();
    }
  }

  /** Reads every part at once (one staging buffer each) and puts them in place. */
  async #readParts(s: GpuParts, dtype: DType, size: number): Promise<Float32Array> {
    if (s.released) throw new DisposedTensorError("webgpu: storage was released");
    const out = new Float32Array(s.elements);
    const { ranges } = s.layout;
    await Promise.all(s.parts.map(async (p, c) => {
      const values = await this.read(p, dtype, p.elements);
      placePart(out, values, s.layout, ranges[c][0], ranges[c][1]);
    }));
    return size < out.length ? out.slice(0, size) : out;
  }

  // ---- profiling ---------------------------------------------------------------------------

  /**
   * Writes a timestamp pair after everything encoded so far, as an empty compute pass of its
   * own (`label`), whatever the profiling switch: ends the shared pass, so the marked work
   * pays one pass boundary, not the two a timed dispatch's own pass costs. Its end stamp is
   * written once the work before it has finished (wgpu/Vulkan: bottom of pipe), so the span
   * between two marks' end stamps is the GPU time of what was dispatched between them. Read
   * with the other passes' timings by {@link readTimings}. Returns false (and writes
   * nothing) without `timestamp-query`.
   */
  mark(label: string): boolean {
    this.check();
    if (!this.features.timestamps) return false;
    const enc = this.#encoder ??= this.device.createCommandEncoder();
    this.#timedPass(enc, label).end();
    return true;
  }

  /**
   * Ends the shared pass and begins a pass of its own with a timestamp pair in the current
   * timing batch (a new batch when that one is full), recorded under `label`.
   */
  #timedPass(enc: GPUCommandEncoder, label: string): GPUComputePassEncoder {
    this.#endPass();
    let batch = this.#batches.at(-1);
    if (!batch || batch.labels.length === MAX_PENDING_DISPATCHES) {
      this.#batches.push(batch = this.#newBatch());
    }
    const i = batch.labels.length;
    batch.labels.push(label);
    return enc.beginComputePass({
      label,
      timestampWrites: {
        querySet: batch.querySet,
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      },
    });
  }

  /** Turns per-pass timestamp queries on or off (no-op without `timestamp-query`). */
  setProfiling(on: boolean): void {
    // While submissions are held the pending passes stay in one command buffer; the timing
    // batches go with it, so only the passes dispatched while on are stamped.
    if (on !== this.#profiling && !this.#hold) this.flush();
    this.#profiling = on;
  }

  #newBatch(): TimingBatch {
    const count = 2 * MAX_PENDING_DISPATCHES;
    const querySet = this.#scoped(
      "timestamp query set",
      () => this.device.createQuerySet({ type: "timestamp", count }),
    );
    const resolve = this.#create(
      count * 8,
      GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      "timestamp resolve",
    );
    const staging = this.#create(
      count * 8,
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      "timestamp staging",
    );
    return { labels: [], querySet, resolve, staging };
  }

  /** GPU time of every pass recorded while profiling, in order; clears them. */
  async readTimings(): Promise<PassTiming[]> {
    this.check();
    this.flush();
    const batches = this.#timings;
    this.#timings = [];
    const out: PassTiming[] = [];
    for (const b of batches) {
      try {
        await b.staging.mapAsync(GPUMapMode.READ);
        const t = new BigUint64Array(b.staging.getMappedRange(), 0, b.labels.length * 2);
        b.labels.forEach((label, i) => {
          const ns = t[2 * i + 1] - t[2 * i];
          out.push({
            label,
            ms: Number(ns > 0n ? ns : 0n) / 1e6,
            startNs: Number(t[2 * i]),
            endNs: Number(t[2 * i + 1]),
          });
        });
        b.staging.unmap();
      } finally {
        b.staging.destroy();
        b.resolve.destroy();
        b.querySet.destroy();
      }
    }
    await this.settle();
    return out;
  }

  // ---- teardown ----------------------------------------------------------------------------

  /** Destroys the device; every later call throws {@link DeviceLostError}. */
  destroy(): void {
    if (this.#lost) return;
    this.flush();
    this.#lost = "the backend was destroyed";
    this.#pool.clear();
    this.#pipelines.clear();
    this.device.destroy();
  }
}
