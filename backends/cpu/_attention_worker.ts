/**
 * Multi-core CPU attention: the same schedule's workers spread over Web Workers that share
 * the inputs, outputs and partial slots through SharedArrayBuffer (CPU storage already lives
 * there, so nothing is copied but the schedule).
 *
 * Each thread runs a contiguous range of schedule workers, chosen so the threads get nearly
 * equal tile counts; schedule workers write disjoint memory, so the bits are the same as the
 * in-thread executor's. The cut units are finished on the calling thread, in the fixed order,
 * after every thread is done. Ops stay synchronous and keep using the in-thread loop; this
 * async entry point is for benchmarks and batch scripts.
 *
 * This file is both the API (imported on the main thread) and the worker's script (when it
 * runs as a Worker it answers messages instead).
 *
 * @module
 */
import type { AttentionInputs, AttentionParams, TensorInfo } from "../backend.ts";
import type { WalkParams } from "./_segment_walk.ts";
import type { CpuArray } from "./_storage.ts";
import { type AttentionBuffers, attentionBuffers, finishCuts, runWorkers } from "./attention.ts";
import { type AttentionGeometry, attentionGeometry } from "../../schedule/geometry.ts";
import { simdScratchBytes } from "./_attention_simd.ts";
import { walkedKvShape } from "./_kv_rows.ts";

interface Job {
  job: number;
  buf: AttentionBuffers;
  g: AttentionGeometry;
  params: WalkParams;
  w0: number;
  w1: number;
}

/** A reply also says how much attention scratch the thread keeps (see `memory()`). */
type Reply =
  | { job: number; ok: true; scratch: number }
  | { job: number; ok: false; error: string; scratch: number };

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
const inWorker = typeof scope.WorkerGlobalScope !== "undefined" &&
  scope instanceof scope.WorkerGlobalScope;

if (inWorker) {
  scope.onmessage = (e: MessageEvent<Job>) => {
    const { job, buf, g, params, w0, w1 } = e.data;
    try {
      runWorkers(buf, g, params, w0, w1);
      scope.postMessage({ job, ok: true, scratch: simdScratchBytes() } satisfies Reply);
    } catch (err) {
      const scratch = simdScratchBytes();
      scope.postMessage({ job, ok: false, error: String(err), scratch } satisfies Reply);
    }
  };
}

let pool: Worker[] = [];
let nextJob = 0;
/** Scratch each worker thread last said it keeps. */
const kept = new Map<Worker, number>();

/**
 * Attention scratch the worker threads keep between calls (each at most
 * `SCRATCH_POOL_BYTES`), as they last reported; 0 once they are closed.
 */
export function workerScratchBytes(): number {
  let n = 0;
  for (const b of kept.values()) n += b;
  return n;
}

function workers(n: number): Worker[] {
  while (pool.length < n) {
    pool.push(new Worker(new URL(import.meta.url), { type: "module" }));
  }
  return pool.slice(0, n);
}

/** Stops the worker threads (they are started again on the next call). */
export function closeAttentionWorkers(): void {
  for (const w of pool) w.terminate();
  pool = [];
  kept.clear();
}

/** Splits schedule workers `[0, G)` into `t` contiguous ranges of nearly equal tile counts. */
export function balancedRanges(loads: readonly number[], t: number): [number, number][] {
  const total = loads.reduce((a, b) => a + b, 0);
  const ranges: [number, number][] = [];
  let w = 0;
  let done = 0;
  for (let i = 0; i < t; i++) {
    const target = ((i + 1) * total) / t;
    const start = w;
    if (i === t - 1) w = loads.length;
    else while (w < loads.length && done + loads[w] / 2 < target) done += loads[w++];
    ranges.push([start, w]);
  }
  return ranges;
}

/**
 * Attention executing `params.schedule` across `threads` Web Workers (default: the logical
 * core count). Same inputs and results as the backend's `attention` kernel, bit for bit
 * (`opts.inputs`: a variant's tensors, as `Backend.attention` takes them).
 *
 * @example
 * ```ts ignore
 * const r = await cpuAttentionParallel(q, k, v, params, { threads: 4 });
 * closeAttentionWorkers();
 * ```
 */
export async function cpuAttentionParallel(
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  params: AttentionParams,
  opts: { threads?: number; inputs?: AttentionInputs } = {},
): Promise<{ out: CpuArray; lse: CpuArray }> {
  const s = params.schedule;
  const g = attentionGeometry(q.shape, walkedKvShape(q.shape, k.shape, params.paged), s);
  const buf = attentionBuffers(q, k, v, g, s, opts.inputs, params.variant);
  const threads = Math.max(1, Math.min(opts.threads ?? (navigator.hardwareConcurrency || 1), 64));
  const loads = s.workers.map((run) => run.reduce((a, seg) => a + seg.tileEnd - seg.tileStart, 0));
  const ranges = balancedRanges(loads, threads).filter(([a, b]) => b > a);
  const jobParams = {
    scale: params.scale,
    causal: params.causal,
    kvLens: params.kvLens,
    schedule: s,
    variant: params.variant,
    keyOffset: params.keyOffset,
    positionLens: params.positionLens,
    paged: params.paged,
  };
  await Promise.all(
    workers(ranges.length).map((worker, i) =>
      new Promise<void>((resolve, reject) => {
        const job = nextJob++;
        const onMessage = (e: MessageEvent<Reply>) => {
          if (e.data.job !== job) return;
          worker.removeEventListener("message", onMessage);
          worker.removeEventListener("error", onError);
          kept.set(worker, e.data.scratch);
          if (e.data.ok) resolve();
          else reject(new Error(`attention worker failed: ${e.data.error}`));
        };
        const onError = (e: ErrorEvent) => {
          e.preventDefault();
          worker.removeEventListener("message", onMessage);
          worker.removeEventListener("error", onError);
          reject(new Error(`attention worker failed: ${e.message}`));
        };
        worker.addEventListener("message", onMessage);
        worker.addEventListener("error", onError);
        const [w0, w1] = ranges[i];
        worker.postMessage({ job, buf, g, params: jobParams, w0, w1 } satisfies Job);
      })
    ),
  );
  finishCuts(buf, g, s);
  return { out: buf.out, lse: buf.lse };
}
