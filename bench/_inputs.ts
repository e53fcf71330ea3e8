/**
 * The benchmark's inputs on the GPU: storage across buffers where the runtime stores a tensor in
 * parts ({@link allocStorage}), filled by tiling a seeded `randn` block with buffer copies
 * ({@link tileInto}), and {@link Inputs}, which makes a case's q, K and V and keeps the host
 * values the float64 check reads. Also used by bench/probes/determinism.ts.
 *
 * @module
 */
import type { Case } from "./_sweep.ts";
import { GpuRuntime } from "../backends/webgpu/internal.ts";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import type { DataId } from "../backends/backend.ts";
import { randn } from "../tensor/creation.ts";
import { normals } from "../tensor/random.ts";
import { type DType, roundToF16 } from "../tensor/dtype.ts";
import { Tensor } from "../tensor/tensor.ts";
import { sizeOf } from "../tensor/shape.ts";

/**
 * Elements above which K/V are tiled from a randn block instead of drawn whole (here and in the
 * probes' `decodeInputs`, bench/_timing.ts).
 */
export const BASE_ELEMS = 1 << 21;

/** The runtime behind the backend (for `allocShaped` and `settle`). */
export function runtimeOf(gpu: WebGpuBackend): GpuRuntime {
  if (!(gpu.ctx instanceof GpuRuntime)) throw new Error("bench: unexpected WebGPU context");
  return gpu.ctx;
}

/** Storage of `t`: its parts in key order when stored across buffers, else itself. */
export function storageOf(gpu: WebGpuBackend, t: Tensor): DataId[] {
  const parts = gpu.storageParts({ id: t.id, shape: t.shape, dtype: t.dtype });
  return parts ? parts.map((p) => p.id) : [t.id];
}

/**
 * Uninitialised storage of `shape`, across buffers where the runtime splits such a tensor
 * (fill it with {@link tileInto}; an out-of-memory error arrives at the next `settle`).
 */
export function allocStorage(gpu: WebGpuBackend, shape: number[], dtype: DType): Tensor {
  return new Tensor(gpu, runtimeOf(gpu).allocShaped(shape, dtype), shape, dtype);
}

/**
 * Fills `t` (whole or each of its parts) with copies of `base` on the GPU: element i of each
 * part is `base`'s element `i mod base.size` (no host array of the whole size).
 */
export function tileInto(gpu: WebGpuBackend, base: Tensor, t: Tensor): void {
  const ctx = gpu.ctx;
  gpu.flush();
  const src = ctx.buffer(base.id);
  const block = ctx.byteLength(base.id);
  const enc = ctx.device.createCommandEncoder({ label: "tile randn" });
  for (const id of storageOf(gpu, t)) {
    const dst = ctx.buffer(id);
    const bytes = ctx.byteLength(id);
    for (let off = 0; off < bytes; off += block) {
      enc.copyBufferToBuffer(src, 0, dst, off, Math.min(block, bytes - off));
    }
  }
  ctx.device.queue.submit([enc.finish()]);
}

/**
 * Makes the seeded inputs of a case on the GPU and keeps what the host needs to recompute
 * any output row in float64. K and V are always a copy of a prefix of (or a tiling of) one
 * `randn` block per dtype: for up to {@link BASE_ELEMS} elements that is exactly
 * `randn(shape, {seed})` (the generator's stream is a prefix of the longer one).
 */
export class Inputs {
  #bases = new Map<string, { t: Tensor; host: Float32Array }>();
  /** Elements of the block: {@link BASE_ELEMS}, or less where one buffer binding is smaller. */
  readonly blockElems: number;
  constructor(readonly gpu: WebGpuBackend, readonly seed: number) {
    // A power of two (any power-of-two D divides it) that fits the split size at 4 bytes.
    const fit = 2 ** Math.floor(Math.log2(gpu.partBytes / 4));
    this.blockElems = Math.min(BASE_ELEMS, fit);
  }

  #seed(which: "q" | "k" | "v"): number {
    return this.seed * 3 + { q: 0, k: 1, v: 2 }[which];
  }

  /** The stored values of the `which` block (host copy, rounded as the GPU stores them). */
  host(c: Case, which: "k" | "v"): Float32Array {
    return this.#base(c, which).host;
  }

  #base(c: Case, which: "k" | "v") {
    const key = `${c.dtype}/${which}`;
    let b = this.#bases.get(key);
    if (!b) {
      const opts = { seed: this.#seed(which), dtype: c.dtype, backend: this.gpu };
      const host = normals(this.blockElems, opts.seed);
      if (c.dtype === "float16") roundToF16(host);
      b = { t: randn([this.blockElems], opts), host };
      this.#bases.set(key, b);
    }
    return b;
  }

  /** q: drawn whole (small); returns the tensor and its stored values. */
  query(c: Case): { t: Tensor; host: Float32Array } {
    const shape = [c.B, c.Hq, 1, c.D];
    const seed = this.#seed("q");
    const host = normals(sizeOf(shape), seed);
    if (c.dtype === "float16") roundToF16(host);
    return { t: randn(shape, { seed, dtype: c.dtype, backend: this.gpu }), host };
  }

  /**
   * Storage for K or V `[B, Hkv, N, D]`, across buffers when over the split size (filled by
   * {@link Inputs.fill}; apart so that an out-of-memory failure is seen before any copy).
   */
  alloc(c: Case): Tensor {
    const shape = [c.B, c.Hkv, c.N, c.D];
    return allocStorage(this.gpu, shape, c.dtype);
  }

  /**
   * Fills K or V: element i of each part (of the whole, when stored whole) is the block's
   * element `i mod blockElems` — what `referenceRow` (bench.ts) reads given the parts' ranges.
   */
  fill(c: Case, which: "k" | "v", t: Tensor): void {
    tileInto(this.gpu, this.#base(c, which).t, t);
  }

  dispose(): void {
    for (const b of this.#bases.values()) b.t.dispose();
    this.#bases.clear();
  }
}
