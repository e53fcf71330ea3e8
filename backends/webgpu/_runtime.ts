/**
 * The WebGPU runtime behind the backend: the {@link GpuContext} every kernel file codes
 * against, composed of storage (`_runtime_storage.ts`), command encoding
 * (`_runtime_encoder.ts`), deferred error reporting (`_runtime_errors.ts`) and profiling
 * (`_runtime_profiler.ts`), plus readback. A readback costs ~10 ms (Deno polls the device
 * every 10 ms), so nothing here waits except `read` and `readTimings`.
 *
 * @module
 */
import type { DataId, MemoryInfo, StoragePart } from "../backend.ts";
import type { GpuBinding, GpuContext, GpuFeatures } from "./context.ts";
import type { DType } from "../../tensor/dtype.ts";
import { DisposedTensorError, LeanattnError } from "../../tensor/errors.ts";
import type { Shape } from "../../tensor/shape.ts";
import { type PartLayout, placePart } from "./_parts.ts";
import { GpuParts } from "./_runtime_data.ts";
import { E4M3_VALUES } from "../../tensor/float8.ts";
import { GpuErrors } from "./_runtime_errors.ts";
import { GpuStorage } from "./_runtime_storage.ts";
import { GpuEncoder, MAX_PENDING_DISPATCHES } from "./_runtime_encoder.ts";
import { GpuProfiler, type PassTiming } from "./_runtime_profiler.ts";

export { GpuData, GpuParts } from "./_runtime_data.ts";
export { MAX_PENDING_DISPATCHES } from "./_runtime_encoder.ts";
export type { PassTiming } from "./_runtime_profiler.ts";

const round4 = (n: number) => Math.ceil(n / 4) * 4;

/** The GPU context and storage manager of one device. */
export class GpuRuntime implements GpuContext {
  readonly device: GPUDevice;
  readonly features: GpuFeatures;
  readonly limits: GPUSupportedLimits;
  readonly description: string;
  /** Tensors over this many bytes are stored in parts across buffers (at most one binding). */
  readonly partBytes: number;

  readonly #errors: GpuErrors;
  readonly #storage: GpuStorage;
  readonly #profiler: GpuProfiler;
  readonly #encoder: GpuEncoder;

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
    const errors = this.#errors = new GpuErrors(device);
    const storage = this.#storage = new GpuStorage(device, features, errors, partBytes);
    this.partBytes = storage.partBytes;
    this.#profiler = new GpuProfiler(device, errors, storage, MAX_PENDING_DISPATCHES);
    this.#encoder = new GpuEncoder(device, features, errors, storage, this.#profiler);
    device.lost.then((info) => {
      errors.markLost(info.message || `device lost (${info.reason})`);
    });
    device.addEventListener("uncapturederror", (e) => {
      e.preventDefault();
      errors.fail(
        new LeanattnError(`WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`),
      );
    });
  }

  // ---- state and errors ----------------------------------------------------------------

  /** Whether the device was lost or destroyed. */
  get lost(): boolean {
    return this.#errors.lost !== null;
  }

  /** Throws {@link DeviceLostError} after loss, or the first stored GPU error (once). */
  check(): void {
    this.#errors.check();
  }

  /** Waits for every outstanding error scope, then throws what `check` throws. */
  settle(): Promise<void> {
    return this.#errors.settle();
  }

  // ---- storage ---------------------------------------------------------------------------

  /** Pooled-buffer requests served by a new buffer (`created`) or from the pool (`reused`). */
  get poolStats(): { created: number; reused: number } {
    return this.#storage.poolStats;
  }

  buffer(id: DataId): GPUBuffer {
    return this.#storage.buffer(id);
  }

  byteLength(id: DataId): number {
    return this.#storage.byteLength(id);
  }

  alloc(elements: number, dtype: DType): DataId {
    return this.#storage.alloc(elements, dtype);
  }

  /**
   * Storage for a tensor of `shape` that the GPU will fill (copies or kernels), in parts across
   * buffers like {@link GpuRuntime.upload} when over {@link GpuRuntime.partBytes}; contents
   * unspecified. For gigabyte inputs made on the GPU (the benchmark's K/V), which `upload`
   * could only take as host arrays as large.
   */
  allocShaped(shape: Shape, dtype: DType): DataId {
    return this.#storage.allocShaped(shape, dtype);
  }

  /** Storage in the parts of `layout` that the GPU will fill; contents unspecified. */
  allocParts(layout: PartLayout, dtype: DType): DataId {
    return this.#storage.allocParts(layout, dtype);
  }

  scratch(bytes: number): GPUBuffer {
    return this.#storage.scratch(bytes);
  }

  scratchFrom(data: ArrayBufferView): GPUBuffer {
    return this.#storage.scratchFrom(data);
  }

  /**
   * Stores float32 values (already rounded for float16) as `dtype`. Given its `shape`, a
   * tensor over {@link GpuRuntime.partBytes} is stored in parts across buffers along its second-to-last
   * axis; one that cannot be cut into parts must fit one buffer.
   */
  upload(values: Float32Array, dtype: DType, shape?: Shape): DataId {
    return this.#storage.upload(values, dtype, shape);
  }

  /**
   * The parts of a tensor stored in parts, viewed with `shape`, or null when it is stored whole. Throws
   * {@link LimitError} when `shape` does not keep the parts' axis and the last axis (a
   * reshape that moved them).
   */
  storageParts(id: DataId, shape: Shape): StoragePart[] | null {
    return this.#storage.storageParts(id, shape);
  }

  /** Throws {@link LimitError} naming `op` if `id` is stored in parts across buffers. */
  whole(op: string, id: DataId): void {
    this.#storage.whole(op, id);
  }

  /** Frees a tensor's storage (returns its buffer to the pool). */
  release(id: DataId): void {
    this.#storage.release(id);
  }

  /** Bytes in live tensors and in the pools. */
  memory(): MemoryInfo {
    return this.#storage.memory();
  }

  // ---- pipelines and dispatch ------------------------------------------------------------

  pipeline(key: string, wgsl: () => string, entryPoint = "main"): GPUComputePipeline {
    return this.#encoder.pipeline(key, wgsl, entryPoint);
  }

  /** Number of cached pipelines. */
  get pipelineCount(): number {
    return this.#encoder.pipelineCount;
  }

  dispatch(
    pipeline: GPUComputePipeline,
    bindings: readonly GpuBinding[],
    workgroups: readonly [number, number?, number?],
    label = "dispatch",
  ): void {
    this.#encoder.dispatch(pipeline, bindings, workgroups, label);
  }

  /**
   * Holds automatic submissions back (`on`) so that a run of dispatches goes to the GPU as one
   * command buffer at the next `flush` — for benchmarks that must not let the GPU wait for
   * the CPU between calls. Scratch buffers are not recycled until then.
   */
  holdSubmits(on: boolean): void {
    this.#encoder.holdSubmits(on);
  }

  wgslType(dtype: DType): "f32" | "f16" {
    return dtype === "float16" && this.features.f16 ? "f16" : "f32";
  }

  /** Submits the pending encoder (if any) and recycles what waited for the submission. */
  flush(): void {
    this.#encoder.flush();
  }

  /** Reads `size` elements as float32 (waits for all work submitted so far). */
  async read(id: DataId, dtype: DType, size: number): Promise<Float32Array> {
    this.check();
    if (id instanceof GpuParts) return this.#readParts(id, dtype, size);
    const d = this.#storage.data(id);
    if (size === 0) return new Float32Array(0);
    const native16 = dtype === "float16" && this.features.f16;
    const per = dtype === "int8" || dtype === "float8e4m3" ? 1 : native16 ? 2 : 4;
    const bytes = round4(size * per);
    this.flush();
    const staging = this.#storage.create(
      bytes,
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      "read staging",
    );
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(d.buffer, 0, staging, 0, bytes);
      this.#errors.scoped("read", () => this.device.queue.submit([enc.finish()]));
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
        : dtype === "int8"
        ? Float32Array.from(new Int8Array(raw, 0, size))
        : dtype === "float8e4m3"
        ? Float32Array.from(new Uint8Array(raw, 0, size), (c) => E4M3_VALUES[c])
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
    this.#encoder.timedPass(label).end();
    return true;
  }

  /** Turns per-pass timestamp queries on or off (no-op without `timestamp-query`). */
  setProfiling(on: boolean): void {
    // While submissions are held the pending passes stay in one command buffer; the timing
    // batches go with it, so only the passes dispatched while on are stamped.
    if (on !== this.#profiler.on && !this.#encoder.held) this.flush();
    this.#profiler.on = on;
  }

  /** GPU time of every pass recorded while profiling, in order; clears them. */
  async readTimings(): Promise<PassTiming[]> {
    this.check();
    this.flush();
    const out = await this.#profiler.collect();
    await this.settle();
    return out;
  }

  // ---- teardown ----------------------------------------------------------------------------

  /** Destroys the device; every later call throws {@link DeviceLostError}. */
  destroy(): void {
    if (this.#errors.lost) return;
    this.flush();
    this.#errors.markLost("the backend was destroyed");
    this.#storage.clear();
    this.#encoder.clear();
    this.device.destroy();
  }
}
