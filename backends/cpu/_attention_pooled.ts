/**
 * Attention ops on several CPU threads while staying synchronous: the calling thread posts
 * the call to the pool's Workers (`_attention_worker.ts`), claims schedule workers from the
 * call's counter like them, then blocks (`Atomics.wait`) until every schedule worker handed
 * out has ended, and finishes the cut units. Same bits as the in-thread executor (workers
 * write disjoint memory; cut units are merged in their fixed order on this thread).
 *
 * Nothing waits for a Worker that has not claimed anything, so a Worker that is slow to start,
 * busy with another call or never started costs only speed: this thread takes what nobody
 * else claimed. Where Workers cannot be had at all (the constructor throws, a Worker died
 * while loading its script, or `Atomics.wait` is not allowed on this thread) calls run in this
 * thread, and `unavailable` keeps the reason. A Worker's job that fails leaves the call to be
 * run again in this thread (the same bits, or that run's error), and so does a Worker that
 * stops mid-run ({@link STALLED_POOL_MS}; the pool is then started afresh).
 *
 * @module
 */
import type { AttentionInputs, AttentionParams, TensorInfo } from "../backend.ts";
import type { CpuArray } from "./_storage.ts";
import { cpuAttention, finishCuts, runClaimed } from "./attention.ts";
import {
  busyWorkers,
  callParts,
  callSync,
  CLAIM,
  claimer,
  closeAttentionWorkers,
  ENDED,
  FAILED,
  poolTesting,
  type PoolWorker,
  post,
  workers,
} from "./_attention_worker.ts";

/**
 * How long a call waits without any handed-out schedule worker ending before it gives up on
 * the pool and runs in this thread. A Worker cannot die mid-run by anything a job throws (the
 * jobs catch it), but an isolate that stops would otherwise leave the op waiting for good:
 * this thread cannot see a Worker's exit event while it blocks. At the default grid a schedule
 * worker is 1/(2 · cores) of a call, so a healthy one ends far sooner; one that does not costs
 * a rerun in this thread, with the same bits.
 */
export const STALLED_POOL_MS = 60_000;

/** Largest thread count a call uses (the calling thread and up to 63 Workers). */
export const MAX_CPU_THREADS = 64;

/**
 * Calls that visit fewer K/V elements (keys visited × head dim, summed over the schedule) run
 * in this thread: posting the job and waking the Workers costs about 0.2–0.3 ms. On the 2-vCPU
 * development machine (2026-12-08, lean, float32, D = 128) (1, 32, 8) with 1k keys (2²⁰
 * elements) took 0.94 ms on one thread and 1.17 on two, 2k 1.49 and 1.22, 4k 2.98 and 2.06.
 */
export const POOLED_MIN_ELEMENTS = 2 ** 21;

let threads = Math.max(1, Math.min(navigator.hardwareConcurrency || 1, MAX_CPU_THREADS));
/** Why the pool cannot be used in this process (set once, on the first failure), or null. */
let unavailable: string | null = null;

/** Threads CPU attention ops use (the calling thread included). */
export function pooledThreads(): number {
  return threads;
}

/** Sets the threads CPU attention ops use; returns the previous count. Validated by the caller. */
export function setPooledThreads(n: number): number {
  const was = threads;
  threads = n;
  return was;
}

/** Why ops run in one thread although more were asked for, or null where they need not. */
export function pooledUnavailable(): string | null {
  return unavailable;
}

/**
 * Blocks until `ENDED` reaches `handed`; false where it did not move for
 * {@link STALLED_POOL_MS} (or `poolTesting.stallMs`).
 */
function allHandedEnded(words: Int32Array, handed: number): boolean {
  const limit = poolTesting.stallMs ?? STALLED_POOL_MS;
  let seen = Atomics.load(words, ENDED);
  let since = performance.now();
  while (seen < handed) {
    Atomics.wait(words, ENDED, seen, Math.min(limit, 1000));
    const now = Atomics.load(words, ENDED);
    if (now !== seen) {
      seen = now;
      since = performance.now();
    } else if (performance.now() - since >= limit) {
      return false;
    }
  }
  return true;
}

/** Whether this thread may block in `Atomics.wait` (not everywhere: a browser's main thread). */
function canBlock(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The backend's attention kernel: on the pool where it pays (more than one thread set, more
 * than one schedule worker with segments, {@link POOLED_MIN_ELEMENTS}), else in this thread.
 */
export function cpuAttentionOp(
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  params: AttentionParams,
  inputs?: AttentionInputs,
): { out: CpuArray; lse: CpuArray } {
  const helpers = Math.min(threads, busyWorkers(params.schedule)) - 1;
  // K/V elements the schedule visits: its tiles' keys × D.
  const s = params.schedule;
  const big = s.totalTiles * s.plan.tileSize * q.shape[3] >= POOLED_MIN_ELEMENTS;
  const pool = helpers > 0 && big && unavailable === null ? startedPool(helpers) : null;
  if (!pool) return cpuAttention(q, k, v, params, inputs);
  return pooledCall(pool, q, k, v, params, inputs) ?? cpuAttention(q, k, v, params, inputs);
}

/** The pool's first `n` Workers, or null (and the reason kept) where none can be started. */
function startedPool(n: number): PoolWorker[] | null {
  if (!canBlock()) {
    unavailable = "Atomics.wait is not allowed on this thread";
    return null;
  }
  try {
    return workers(n);
  } catch (e) {
    unavailable = `no Worker could be started: ${e instanceof Error ? e.message : e}`;
    return null;
  }
}

/**
 * One call on `pool` and this thread, or null where a job could not be posted or a Worker's
 * job failed (the caller then runs the call in this thread). Waits only for the schedule
 * workers handed out, and gives up on the pool where none of them ends for
 * {@link STALLED_POOL_MS}.
 */
function pooledCall(
  pool: PoolWorker[],
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  params: AttentionParams,
  inputs?: AttentionInputs,
): { out: CpuArray; lse: CpuArray } | null {
  const { s, g, buf, walk, memories, base } = callParts(q, k, v, params, inputs);
  const G = s.workers.length;
  poolTesting.pooledCalls++;
  const sync = callSync();
  const words = new Int32Array(sync, 0, 16);
  try {
    for (const p of pool) post(p, { ...base, sync }, s, null, memories);
  } catch {
    // A job that cannot be posted: nothing more is handed out, and this thread runs the call.
    Atomics.add(words, CLAIM, G);
    return null;
  }
  const { claim, end } = claimer(sync, G);
  let failure: unknown = null;
  try {
    runClaimed(buf, g, { ...walk, schedule: s }, claim);
  } catch (e) {
    failure = e;
  } finally {
    end();
  }
  // Nothing is handed out from here on; wait for what was.
  const handed = Math.min(Atomics.add(words, CLAIM, G), G);
  if (!allHandedEnded(words, handed)) {
    // A Worker stopped mid-run: end the pool (started afresh next call); the Workers write
    // only this call's buffers, which the rerun in this thread does not use.
    poolTesting.stalledCalls++;
    closeAttentionWorkers();
    if (failure !== null) throw failure;
    return null;
  }
  if (failure !== null) throw failure;
  if (Atomics.load(words, FAILED) > 0) return null;
  finishCuts(buf, g, s);
  return { out: buf.out, lse: buf.lse };
}
