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
 * time, and afterwards its number; each Worker has one message handler for all its jobs; and
 * the Workers count their jobs done on a shared counter that the calling thread awaits with
 * `Atomics.waitAsync` (one wake-up a call instead of a reply message a Worker; a Worker
 * sends a message only when its job failed).
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
  /** Schedule workers `[w0, w1)`, or null: claim them from the call's counter (`CLAIM`). */
  work: [number, number] | null;
  /** The call's shared words (`CLAIM`, `DONE`, `FAILED`, `LOST`). */
  sync: Int32Array;
  /** Fail this job before it starts (tests: {@link poolTesting}). */
  fail?: true;
}

/** For tests: `failJobs` makes every Worker's job of the next calls throw before it runs. */
export const poolTesting = { failJobs: false };

/**
 * A call's shared words, in one 64-byte buffer (a cache line of its own; with the claim
 * counter in a 4-byte buffer the whole test suite's process aborted at exit, twice in two
 * runs, with glibc's "corrupted size vs. prev_size in fastbins"; with 64 bytes it did not,
 * bench/NOTES.md): `Atomics.add` on `CLAIM` hands out the next schedule worker; each Worker
 * adds one to `DONE` when its job ends, and also to `FAILED` when it failed (its error
 * follows as a message); the calling thread adds to `LOST` for a Worker that died.
 */
const CLAIM = 0, DONE = 8, FAILED = 9, LOST = 10;

/** The first message a Worker gets: where it reports what it holds (`Status`). */
interface Init {
  status: Float64Array;
}

/**
 * What a Worker holds, written by it after each job and forget: attention scratch bytes (see
 * `memory()`) and WebAssembly memories.
 */
const SCRATCH = 0, MEMORIES = 1;

/** Sent when a memory this Worker was given is collected on the calling thread. */
interface Forget {
  forgetMemory: number;
}

/** The only message a Worker sends: why its job failed. */
interface Failure {
  error: string;
}

/** Schedules a Worker keeps by number; past this many it is told to forget them all. */
const KEPT_SCHEDULES = 64;

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
const inWorker = typeof scope.WorkerGlobalScope !== "undefined" &&
  scope instanceof scope.WorkerGlobalScope;

if (inWorker) {
  const schedules = new Map<number, LeanSchedule>();
  const memories = new ReceivedMemories();
  let status: Float64Array = new Float64Array(2);
  const report = () => {
    status[SCRATCH] = simdScratchBytes();
    status[MEMORIES] = memories.size;
  };
  scope.onmessage = (e: MessageEvent<Job | Forget | Init>) => {
    const d = e.data;
    if ("status" in d) return void (status = d.status);
    if ("forgetMemory" in d) return memories.forget(d.forgetMemory), report();
    const { buf, g, params, scheduleId, work, sync } = d;
    try {
      if (d.memories) buf.memories = memories.unpack(d.memories);
      if (d.forget) schedules.clear();
      if (d.schedule) schedules.set(scheduleId, d.schedule);
      const schedule = schedules.get(scheduleId);
      if (!schedule) throw new Error(`schedule ${scheduleId} was never sent (a bug)`);
      if (d.fail) throw new Error("failure injected by poolTesting");
      if (work) runWorkers(buf, g, { ...params, schedule }, ...work);
      else runClaimed(buf, g, { ...params, schedule }, () => Atomics.add(sync, CLAIM, 1));
    } catch (err) {
      // The message first: the calling thread, seeing FAILED, waits for it.
      scope.postMessage({ error: String(err) } satisfies Failure);
      Atomics.add(sync, FAILED, 1);
    } finally {
      report();
      Atomics.add(sync, DONE, 1);
      Atomics.notify(sync, DONE);
    }
  };
}

/** The call a Worker is in: its shared words and where its failure goes. */
interface InCall {
  sync: Int32Array;
  fail: (e: Error) => void;
}

/** A started Worker, the call it is in and the schedule numbers it has been sent. */
interface PoolWorker {
  worker: Worker;
  call: InCall | null;
  sent: Set<number>;
  /** Numbers of the WebAssembly memories it has been sent (`_worker_memories.ts`). */
  memories: Set<number>;
  /** What it holds (`SCRATCH`, `MEMORIES`), written by the Worker. */
  status: Float64Array;
}

let pool: PoolWorker[] = [];
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
  for (const p of pool) n += p.status[SCRATCH];
  return n;
}

/**
 * The WebAssembly memories (K/V storage) the worker threads hold, as they last reported: the
 * ones they were sent and not yet told to forget (for tests).
 */
export function workerHeldMemories(): number {
  let n = 0;
  for (const p of pool) n += p.status[MEMORIES];
  return n;
}

function startWorker(): PoolWorker {
  const p: PoolWorker = {
    worker: new Worker(new URL(import.meta.url), { type: "module" }),
    call: null,
    sent: new Set(),
    memories: new Set(),
    status: new Float64Array(new SharedArrayBuffer(16)),
  };
  p.worker.postMessage({ status: p.status } satisfies Init);
  p.worker.onmessage = (e: MessageEvent<Failure>) => {
    p.call?.fail(new Error(`attention worker failed: ${e.data.error}`));
  };
  p.worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    // The Worker's state is unknown now: fail its call, count it out of it, and start a
    // fresh one next time.
    if (p.call) {
      p.call.fail(new Error(`attention worker failed: ${e.message}`));
      Atomics.add(p.call.sync, LOST, 1);
      Atomics.notify(p.call.sync, DONE);
    }
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

/** Posts one job to `p` (the schedule only the first time `p` gets its number). */
function post(
  p: PoolWorker,
  base: Omit<Job, "schedule" | "forget" | "memories" | "work">,
  schedule: LeanSchedule,
  work: Job["work"],
  kvMemories: AttentionBuffers["memories"],
): void {
  const first = !p.sent.has(base.scheduleId);
  const forget = first && p.sent.size >= KEPT_SCHEDULES;
  if (forget) p.sent.clear();
  if (first) p.sent.add(base.scheduleId);
  const msg: Job = { ...base, work, ...first && { schedule }, ...forget && { forget } };
  if (poolTesting.failJobs) msg.fail = true;
  if (kvMemories) msg.memories = shipMemories(kvMemories, p.memories);
  p.worker.postMessage(msg);
}

/**
 * Resolves once `n` jobs of the call have ended (`DONE`) or their Workers died (`LOST`): one
 * wake-up of this thread for the whole call, not a message a Worker.
 */
async function allEnded(sync: Int32Array, n: number): Promise<void> {
  for (;;) {
    const done = Atomics.load(sync, DONE);
    if (done + Atomics.load(sync, LOST) >= n) return;
    const w = Atomics.waitAsync(sync, DONE, done);
    if (w.async) await w.value;
  }
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
  // workers from the call's counter.
  const sync = new Int32Array(new SharedArrayBuffer(64));
  const work: Job["work"][] = [];
  if ((opts.split ?? "claimed") === "claimed") {
    const busy = s.workers.reduce((a, run) => a + (run.length > 0 ? 1 : 0), 0);
    for (let i = 0; i < Math.min(threads, Math.max(1, busy)); i++) work.push(null);
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
  const base = { buf: posted, g, params: walk, scheduleId, sync };
  const errors: Error[] = [];
  let arrived: (() => void) | null = null;
  const call: InCall = { sync, fail: (e) => (errors.push(e), arrived?.()) };
  const helpers = workers(Math.max(0, work.length - 1));
  helpers.forEach((p, i) => {
    p.call = call;
    post(p, base, s, work[i + 1], memories);
  });
  let failure: unknown = null;
  try {
    const here = { ...walk, schedule: s };
    const mine = work[0];
    if (mine) runWorkers(buf, g, here, ...mine);
    else if (mine === null) runClaimed(buf, g, here, () => Atomics.add(sync, CLAIM, 1));
  } catch (e) {
    failure = e;
  }
  // Every Worker's job has ended before this returns, also when this thread's part threw.
  await allEnded(sync, helpers.length);
  // A Worker that failed posted its error before counting its job: wait for every such
  // message, so none arrives during a later call.
  const failed = Atomics.load(sync, FAILED);
  while (errors.length < failed) await new Promise<void>((r) => arrived = r);
  for (const p of helpers) if (p.call === call) p.call = null;
  failure ??= errors[0] ?? null;
  if (failure !== null) throw failure;
  finishCuts(buf, g, s);
  return { out: buf.out, lse: buf.lse };
}
