/**
 * What one benchmark case holds on the GPU at once, for the memory rule of `skipReason`. A
 * device asked for more memory than it has may be lost rather than refuse the allocation (a
 * case of 64 GiB of K+V, (16, 32, 8) at 1M with the paged rows, on an 80 GB H100), so a case
 * is skipped unless everything it allocates fits with headroom.
 *
 * The rows of a case are timed interleaved, so every row's own copy of K/V (the quantized
 * data and scales of `lean-int8`, the KV cache of `lean-paged16`, ORT's copy) lives beside
 * K and V until the case ends. The PyTorch peer is not counted: it runs in its own process
 * after every case of ours has freed its tensors.
 *
 * @module
 */
import { partLayout } from "../backends/webgpu/internal.ts";
import { sizeClass } from "../backends/webgpu/_pool.ts";
import type { Case, MemoryLimits } from "./_sweep.ts";

/**
 * Share of the device's memory a case may plan to hold; the rest is for what is not counted
 * (the driver's own allocations, pipelines, the side pool of buffers awaiting a submission).
 */
export const MEMORY_HEADROOM = 0.9;

/** Total memory of the GPUs the benchmark runs on, by adapter description (nvidia-smi's). */
const KNOWN_MEMORY: readonly [RegExp, number][] = [
  [/\bH100\b/i, 81559 * 2 ** 20],
  [/\bH200\b/i, 143771 * 2 ** 20],
];

/** The memory of a known GPU (bytes), else undefined (no memory rule: a software adapter). */
export function deviceMemoryOf(description: string): number | undefined {
  return KNOWN_MEMORY.find(([re]) => re.test(description))?.[1];
}

const bytesOf = (dtype: string) => (dtype === "float16" ? 2 : 4);

/**
 * Bytes the WebGPU runtime allocates for a tensor of `shape` (`per` bytes an element): its
 * parts where over the split size, each buffer rounded to the pool's size class unless that
 * class is over the binding (`_runtime_storage.ts`, `#classOf`).
 */
export function allocatedBytes(shape: number[], per: number, lim: MemoryLimits): number {
  const bind = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
  const split = lim.partBytes !== undefined && lim.partBytes < bind ? lim.partBytes : bind;
  const total = shape.reduce((a, b) => a * b, 1) * per;
  const layout = partLayout(shape, per, split, "the split size");
  const sizes = layout
    ? layout.ranges.map(([n0, n1]) => layout.outer * (n1 - n0) * layout.row * per)
    : [total];
  return sizes.reduce((a, bytes) => {
    const cls = sizeClass(bytes);
    return a + (cls > bind ? Math.max(16, Math.ceil(bytes / 16) * 16) : cls);
  }, 0);
}

/**
 * What case `c` with rows `algos` holds at once, in bytes, by item (those that hold nothing
 * extra are left out) and in total.
 */
export function caseMemory(
  c: Case,
  algos: readonly string[],
  lim: MemoryLimits,
): { total: number; items: [string, number][] } {
  const kvShape = [c.B, c.Hkv, c.N, c.D];
  const per = bytesOf(c.dtype);
  const kv = allocatedBytes(kvShape, per, lim);
  const kvRaw = c.B * c.Hkv * c.N * c.D * per;
  const bind = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
  const whole = kv <= bind && kvRaw <= (lim.partBytes ?? Infinity);
  const items: [string, number][] = [["K and V", 2 * kv]];
  // q, and each row's output (q's dtype) and lse (float32).
  const rowOut = c.B * c.Hq * c.D * per + c.B * c.Hq * 4;
  items.push(["q and outputs", c.B * c.Hq * c.D * per + algos.length * rowOut]);
  for (const a of algos) {
    if (a === "lean-int8" || a === "lean-float8e4m3") {
      const scales = a === "lean-int8" ? [c.B, c.Hkv, c.N] : [c.B, c.Hkv];
      const data = allocatedBytes(kvShape, 1, lim) + allocatedBytes(scales, 4, lim);
      items.push([`${a} quantized K and V`, 2 * data]);
    } else if (a.startsWith("lean-paged")) {
      const pageSize = Number(a.slice("lean-paged".length));
      const lens = c.kvLens ?? Array(c.B).fill(c.N);
      const pages = lens.reduce((s: number, n: number) => s + Math.ceil(n / pageSize), 0);
      // The cache's pages, and the two chunks (at most a binding each) it is filled from.
      const cache = 2 * pages * pageSize * c.Hkv * c.D * per;
      items.push([`${a} cache`, cache + 2 * Math.min(kvRaw, bind)]);
    } else if (a === "naive" && whole) {
      // float32 copies of float16 K and V, and the [B, Hq, N] float32 scores (several).
      const f32kv = c.dtype === "float16" ? 2 * c.B * c.Hkv * c.N * c.D * 4 : 0;
      items.push(["naive temporaries", f32kv + 4 * c.B * c.Hq * c.N * 4]);
    } else if (a === "ort-webgpu" && whole && c.dtype === "float16") {
      items.push(["ORT's K and V", 2 * kvRaw]);
    }
  }
  // Idle buffers the pool keeps (its cap) and scratch such as the partial states.
  items.push(["pool and scratch", Math.min(2 ** 30, Math.max(2 ** 26, lim.maxBufferSize))]);
  return { total: items.reduce((a, [, b]) => a + b, 0), items };
}
