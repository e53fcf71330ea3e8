/**
 * Multi-core CPU attention: the same schedule's workers spread over this thread and Web
 * Workers that share the inputs, outputs and partial slots through SharedArrayBuffer (CPU
 * storage already lives there, so nothing is copied but a small job description).
 *
 * Each thread runs a contiguous range of schedule workers, chosen so the threads get nearly
 * equal tile counts; schedule workers write disjoint memory, so the bits are the same as the
 * in-thread executor's. The calling thread runs the first range itself while the Workers run
 * the others (it would only wait otherwise, and one Worker fewer is one wake-up fewer), then
 * finishes the cut units in the fixed order once every thread is done. Ops stay synchronous
 * and keep using the in-thread loop; this async entry point is for benchmarks and batch
 * scripts.
 *
 * A call's fixed cost is on the calling thread, one Worker after another, so it is kept
 * small: a Worker gets a schedule (plans cache theirs, so calls repeat them) only the first
 * time, and afterwards its number; each Worker has one message handler for all its jobs.
 *
 * This file is both the API (imported on the main thread) and the worker's script (when it
 * runs as a Worker it answers messages instead).
 *
 * @module
 */
import type { AttentionInputs, AttentionParams, TensorInfo } from "../backend.ts";
import type { WalkParams } from "./_segment_walk.ts";
import type { CpuArray } from "./_storage.ts";
import type { LeanSchedule } from "../../schedule/lean_schedule.ts";
import {
  type AttentionBuffers,
  attentionBuffers,
  finishCuts,
  runClaimed,
  runWorkers,
} from "./attention.ts";
import { type AttentionGeometry, attentionGeometry } from "../../schedule/geometry.ts";
import { simdScratchBytes } from "./_attention_simd.ts";
import { walkedKvShape } from "./_kv_rows.ts";
import {
  type MemoryShipment,
  onMemoryCollected,
  ReceivedMemories,
  shipMemories,
} from "./_worker_memories.ts";

interface Job {
  job: number;
  /** The buffers without their WebAssembly memories, which travel as `memories`. */
  buf: AttentionBuffers;
  memories?: MemoryShipment;
  g: AttentionGeometry;
  params: Omit<WalkParams, "schedule">;
  /** The schedule's number; the schedule itself the first time this Worker gets it. */
  scheduleId: number;
  schedule?: LeanSchedule;
  /** Forget the schedules kept so far (the calling thread keeps the count bounded). */
  forget?: boolean;
  /**
   * Schedule workers `[w0, w1)`, or the call's claim counter (shared; `Atomics.add` hands out
   * the next worker).
   */
  work: [number, number] | Int32Array;
}

/** Sent when a memory this Worker was given is collected on the calling thread. */
interface Forget {
  forgetMemory: number;
}

/**
 * A reply also says how much attention scratch the thread keeps (see `memory()`) and how
 * many WebAssembly memories it holds.
 */
type Reply =
  & { job: number; scratch: number; memories: number }
  & ({ ok: true } | { ok: false; error: string });

/** Schedules a Worker keeps by number; past this many it is told to forget them all. */
const KEPT_SCHEDULES = 64;

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
const inWorker = typeof scope.WorkerGlobalScope !== "undefined" &&
  scope instanceof scope.WorkerGlobalScope;

if (inWorker) {
  const schedules = new Map<number, LeanSchedule>();
  const memories = new ReceivedMemories();
  scope.onmessage = (e: MessageEvent<Job | Forget>) => {
    if ("forgetMemory" in e.data) return memories.forget(e.data.forgetMemory);
    const { job, buf, g, params, scheduleId, work } = e.data;
    try {
      if (e.data.memories) buf.memories = memories.unpack(e.data.memories);
      if (e.data.forget) schedules.clear();
      if (e.data.schedule) schedules.set(scheduleId, e.data.schedule);
      const schedule = schedules.get(scheduleId);
      if (!schedule) throw new Error(`schedule ${scheduleId} was never sent (a bug)`);
      if (work instanceof Int32Array) {
        runClaimed(buf, g, { ...params, schedule }, () => Atomics.add(work, 0, 1));
      } else runWorkers(buf, g, { ...params, schedule }, ...work);
      const held = { scratch: simdScratchBytes(), memories: memories.size };
      scope.postMessage({ job, ok: true, ...held } satisfies Reply);
    } catch (err) {
      const held = { scratch: simdScratchBytes(), memories: memories.size };
      scope.postMessage({ job, ok: false, error: String(err), ...held } satisfies Reply);
    }
  };
}

/** A started Worker, its jobs in flight and the schedule numbers it has been sent. */
interface PoolWorker {
  worker: Worker;
  pending: Map<number, { resolve: () => void; reject: (e: Error) => void }>;
  sent: Set<number>;
  /** Numbers of the WebAssembly memories it has been sent (`_worker_memories.ts`). */
  memories: Set<number>;
  scratch: number;
  /** How many memories the Worker said it holds, in its last reply. */
  heldMemories: number;
}

let pool: PoolWorker[] = [];
let nextJob = 0;
let nextSchedule = 0;
const scheduleIds = new WeakMap<LeanSchedule, number>();

onMemoryCollected((id) => {
  for (const p of pool) {
    if (p.memories.delete(id)) p.worker.postMessage({ forgetMemory: id } satisfies Forget);
  }
});

/**
 * Attention scratch the worker threads keep between calls (each at most
 * `SCRATCH_POOL_BYTES`), as they last reported; 0 once they are closed.
 */
export function workerScratchBytes(): number {
  let n = 0;
  for (const p of pool) n += p.scratch;
  return n;
}

/**
 * The WebAssembly memories (K/V storage) the worker threads hold, as they last reported: the
 * ones they were sent and not yet told to forget (for tests).
 */
export function workerHeldMemories(): number {
  let n = 0;
  for (const p of pool) n += p.heldMemories;
  return n;
}

function startWorker(): PoolWorker {
  const p: PoolWorker = {
    worker: new Worker(new URL(import.meta.url), { type: "module" }),
    pending: new Map(),
    sent: new Set(),
    memories: new Set(),
    scratch: 0,
    heldMemories: 0,
  };
  p.worker.onmessage = (e: MessageEvent<Reply>) => {
    const r = e.data;
    const waiter = p.pending.get(r.job);
    p.scratch = r.scratch;
    p.heldMemories = r.memories;
    if (!waiter) return;
    p.pending.delete(r.job);
    if (r.ok) waiter.resolve();
    else waiter.reject(new Error(`attention worker failed: ${r.error}`));
  };
  p.worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    // The Worker's state is unknown now: fail its jobs and start a fresh one next time.
    for (const w of p.pending.values()) {
      w.reject(new Error(`attention worker failed: ${e.message}`));
    }
    p.pending.clear();
    p.worker.terminate();
    pool = pool.filter((x) => x !== p);
  };
  return p;
}

function workers(n: number): PoolWorker[] {
  while (pool.length < n) pool.push(startWorker());
  return pool.slice(0, n);
}

/** Stops the worker threads (they are started again on the next call). */
export function closeAttentionWorkers(): void {
  for (const p of pool) p.worker.terminate();
  pool = [];
}

/** Posts one range to `p`; resolves when it is done. */
function post(
  p: PoolWorker,
  base: Omit<Job, "job" | "schedule" | "forget" | "memories" | "work">,
  schedule: LeanSchedule,
  work: Job["work"],
  kvMemories: AttentionBuffers["memories"],
): Promise<void> {
  const job = nextJob++;
  const first = !p.sent.has(base.scheduleId);
  const forget = first && p.sent.size >= KEPT_SCHEDULES;
  if (forget) p.sent.clear();
  if (first) p.sent.add(base.scheduleId);
  return new Promise<void>((resolve, reject) => {
    p.pending.set(job, { resolve, reject });
    const msg: Job = { ...base, job, work, ...first && { schedule }, ...forget && { forget } };
    if (kvMemories) msg.memories = shipMemories(kvMemories, p.memories);
    p.worker.postMessage(msg);
  });
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
 * How a call's schedule workers are spread over its threads: `claimed` (the default), each
 * thread takes the next unclaimed worker from a shared counter until none is left, so a
 * thread the host delays takes fewer; `ranges`, contiguous ranges of nearly equal tile counts
 * fixed before the call. Both give the same bits (workers write disjoint memory).
 */
export type WorkerSplit = "claimed" | "ranges";

/**
 * Attention executing `params.schedule` across `threads` threads, this one and `threads − 1`
 * Web Workers (default: the logical core count). Same inputs and results as the backend's
 * `attention` kernel, bit for bit (`opts.inputs`: a variant's tensors, as `Backend.attention`
 * takes them).
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
  opts: { threads?: number; inputs?: AttentionInputs; split?: WorkerSplit } = {},
): Promise<{ out: CpuArray; lse: CpuArray }> {
  const s = params.schedule;
  const g = attentionGeometry(q.shape, walkedKvShape(q.shape, k.shape, params.paged), s);
  const buf = attentionBuffers(q, k, v, g, s, opts.inputs, params.variant);
  const threads = Math.max(1, Math.min(opts.threads ?? (navigator.hardwareConcurrency || 1), 64));
  // Claimed: a thread for each schedule worker with segments, at most `threads`, all taking
  // workers from one counter (in a 64-byte buffer: a cache line of its own; with a 4-byte
  // buffer the whole test suite's process aborted at exit, twice in two runs, with glibc's
  // "corrupted size vs. prev_size in fastbins"; with 64 bytes it did not, bench/NOTES.md).
  const work: Job["work"][] = [];
  if ((opts.split ?? "claimed") === "claimed") {
    const busy = s.workers.reduce((a, run) => a + (run.length > 0 ? 1 : 0), 0);
    const counter = new Int32Array(new SharedArrayBuffer(64));
    for (let i = 0; i < Math.min(threads, Math.max(1, busy)); i++) work.push(counter);
  } else {
    const loads = s.workers.map((run) => run.reduce((a, x) => a + x.tileEnd - x.tileStart, 0));
    work.push(...balancedRanges(loads, threads).filter(([a, b]) => b > a));
  }
  const walk = {
    scale: params.scale,
    causal: params.causal,
    kvLens: params.kvLens,
    variant: params.variant,
    keyOffset: params.keyOffset,
    positionLens: params.positionLens,
    paged: params.paged,
  };
  let scheduleId = scheduleIds.get(s);
  if (scheduleId === undefined) scheduleIds.set(s, scheduleId = nextSchedule++);
  // The memories go by number (`_worker_memories.ts`), not as objects in every job.
  const { memories, ...posted } = buf;
  const base = { buf: posted, g, params: walk, scheduleId };
  const done = workers(Math.max(0, work.length - 1)).map((p, i) =>
    post(p, base, s, work[i + 1], memories)
  );
  // Every Worker's promise is awaited, also when this thread's range throws.
  const settled = Promise.allSettled(done);
  let failure: unknown = null;
  try {
    const here = { ...walk, schedule: s };
    const mine = work[0];
    if (mine instanceof Int32Array) runClaimed(buf, g, here, () => Atomics.add(mine, 0, 1));
    else if (mine) runWorkers(buf, g, here, ...mine);
  } catch (e) {
    failure = e;
  }
  for (const r of await settled) if (r.status === "rejected") failure ??= r.reason;
  if (failure !== null) throw failure;
  finishCuts(buf, g, s);
  return { out: buf.out, lse: buf.lse };
}
