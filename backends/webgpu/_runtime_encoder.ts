/**
 * The command encoding of the WebGPU runtime: cached pipelines, the pending encoder and the
 * compute pass its dispatches share, and submission (on `flush`, or every
 * {@link MAX_PENDING_DISPATCHES} dispatches).
 *
 * @module
 */
import type { GpuBinding, GpuFeatures } from "./context.ts";
import { type LeanattnError, LimitError } from "../../tensor/errors.ts";
import type { GpuErrors } from "./_runtime_errors.ts";
import type { GpuStorage } from "./_runtime_storage.ts";
import type { GpuProfiler } from "./_runtime_profiler.ts";

/** Dispatches recorded before the pending encoder is submitted on its own. */
export const MAX_PENDING_DISPATCHES = 64;

/** The pending commands of one device. */
export class GpuEncoder {
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
  #pipelines = new Map<string, GPUComputePipeline>();
  #layouts = new WeakMap<GPUComputePipeline, GPUBindGroupLayout>();
  /** Pipelines whose creation failed, with the error (they stay cached, failing fast). */
  #bad = new WeakMap<GPUComputePipeline, LeanattnError>();

  readonly #errors: GpuErrors;
  readonly #storage: GpuStorage;
  readonly #profiler: GpuProfiler;

  constructor(
    readonly device: GPUDevice,
    readonly features: GpuFeatures,
    errors: GpuErrors,
    storage: GpuStorage,
    profiler: GpuProfiler,
  ) {
    this.#errors = errors;
    this.#storage = storage;
    this.#profiler = profiler;
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  pipeline(key: string, wgsl: () => string, entryPoint = "main"): GPUComputePipeline {
    const k = `${key}#${entryPoint}`;
    let p = this.#pipelines.get(k);
    if (p === undefined) {
      this.#errors.check();
      const code = wgsl();
      const made: GPUComputePipeline = this.#errors.scoped(`pipeline ${key}`, () => {
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
      const owner = this.#storage.use(b);
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
    this.#storage.use(b.buffer);
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
    this.#errors.check();
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
    const group = this.#errors.scoped(
      label,
      () => this.device.createBindGroup({ layout: layout!, entries, label }),
    );
    const enc = this.#encoder ??= this.device.createCommandEncoder();
    // A timed dispatch gets a pass of its own (timestamps are written at pass boundaries);
    // the others share the open one.
    const timed = this.#profiler.on && this.features.timestamps;
    let pass: GPUComputePassEncoder;
    if (timed) {
      this.#endPass();
      pass = this.#profiler.timedPass(enc, label);
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

  /** Whether automatic submissions are held back. */
  get held(): boolean {
    return this.#hold;
  }

  /** The pending encoder (a new one if none). */
  pending(): GPUCommandEncoder {
    return this.#encoder ??= this.device.createCommandEncoder();
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
    if (this.#errors.lost) return;
    this.#endPass();
    const enc = this.#encoder;
    this.#encoder = null;
    this.#dispatches = 0;
    this.#profiler.submitting(enc);
    if (enc) this.#errors.scoped("submit", () => this.device.queue.submit([enc.finish()]));
    this.#storage.submitted(auto);
  }

  /** Ends the shared compute pass, if one is open (before other commands or a submission). */
  #endPass(): void {
    const pass = this.#pass;
    this.#pass = null;
    pass?.end();
  }

  /**
   * Ends the shared pass and begins a pass of its own with a timestamp pair, recorded under
   * `label` (see `GpuProfiler.timedPass`).
   */
  timedPass(label: string): GPUComputePassEncoder {
    const enc = this.pending();
    this.#endPass();
    return this.#profiler.timedPass(enc, label);
  }

  /** Forgets the cached pipelines (teardown). */
  clear(): void {
    this.#pipelines.clear();
  }
}
