/**
 * Multi-core CPU attention: the same schedule's workers spread over this thread and Web
 * Workers that share the inputs, outputs and partial slots through SharedArrayBuffer (CPU
 * storage already lives there, so nothing is copied but a small job description).
 *
 * Each thread runs a contiguous range of schedule workers, chosen so the threads get nearly
 * equal tile counts; schedule workers write disjoint memory, so the bits are the same as the
 * in-thread executor's. The calling thread runs the first range itself while the Workers run
 * the others (it would only wait otherwise, and one Worker fewer is one wake-up fewer), then
 * finishes the cut units in the fixed order once every thread is done. This file has the
 * pool and its async entry point (benchmarks, batch scripts); ops, which are synchronous, use
 * it through `_attention_pooled.ts`, whose calling thread blocks on the shared counters.
 *
 * The Workers are `node:worker_threads` Workers, unreferenced, so an idle pool does not keep
 * the process alive (a web Worker would). Where the library was imported by URL they load it
 * through a `data:` module ({@link workerUrl}).
 *
 * A call's fixed cost is on the calling thread, one Worker after another, so it is kept
 * small: a Worker gets a schedule (plans cache theirs, so calls repeat them) only the first
 * time, and afterwards its number; each Worker has one message handler for all its jobs; and
 * the Workers count their jobs done on a shared counter that the calling thread awaits with
 * `Atomics.waitAsync` (one wake-up a call instead of a reply message a Worker; a failed job
 * leaves its error's text in the call's shared bytes).
 *
 * This file is both the API (imported on the main thread) and the worker's script (when it
 * runs as a Worker it answers messages instead).
 *
 * @module
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
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
import { packViews, unpackViews } from "./_message_views.ts";
import { walkedKvShape } from "./_kv_rows.ts";
import {
  type MemoryShipment,
  onMemoryCollected,
  ReceivedMemories,
  shipMemories,
} from "./_worker_memories.ts";

export interface Job {
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
  /** The call's shared words and error bytes ({@link callSync}). */
  sync: SharedArrayBuffer;
  /** A failure injected by tests ({@link poolTesting}). */
  fail?: InjectedFailure;
}

/**
 * `true`: a Worker's job throws before it runs; `"claimed"`: it throws once it claimed its
 * first schedule worker (claimed split), leaving that worker's output unwritten; `"hang"`: it
 * blocks for good there instead (as a Worker that stopped mid-run would leave it).
 */
export type InjectedFailure = true | "claimed" | "hang";

/**
 * For tests: `fail` injects a failure into every Worker job of the next calls
 * ({@link InjectedFailure}). `pooledCalls` counts the ops' calls that posted to the pool,
 * `stalledCalls` those that gave up on a stalled Worker (`stallMs` replaces
 * `STALLED_POOL_MS`). `workerUrl` replaces the Workers' script (a script that fails to load,
 * say).
 */
export const poolTesting: {
  fail: InjectedFailure | null;
  pooledCalls: number;
  stalledCalls: number;
  stallMs?: number;
  workerUrl?: URL;
} = { fail: null, pooledCalls: 0, stalledCalls: 0 };

/**
 * A call's shared words, in the first 64 bytes of its buffer (a cache line of their own; with
 * the claim counter in a 4-byte buffer the whole test suite's process aborted at exit, twice
 * in two runs, with glibc's "corrupted size vs. prev_size in fastbins"; with 64 bytes it did
 * not, bench/NOTES.md): `Atomics.add` on `CLAIM` hands out the next schedule worker, and
 * `ENDED` counts the handed-out ones that ended (done or failed); each Worker adds one to
 * `DONE` when its job ends, and also to `FAILED` when it failed; the calling thread adds to
 * `LOST` for a Worker that died. The first failure's text follows, UTF-8, its length at
 * `ERROR_LENGTH`.
 */
export const CLAIM = 0, DONE = 8, FAILED = 9, LOST = 10, ENDED = 11;
const ERROR_LENGTH = 12, ERROR_AT = 64, ERROR_BYTES = 1024;

/** A call's shared buffer: the words above, then room for a failure's text. */
export function callSync(): SharedArrayBuffer {
  return new SharedArrayBuffer(ERROR_AT + ERROR_BYTES);
}

/** Keeps the first failure's text of a call (later ones only count). */
function recordFailure(sync: SharedArrayBuffer, err: unknown): void {
  const words = new Int32Array(sync, 0, 16);
  const text = new TextEncoder().encode(String(err)).subarray(0, ERROR_BYTES);
  if (Atomics.compareExchange(words, ERROR_LENGTH, 0, -1) === 0) {
    new Uint8Array(sync, ERROR_AT, ERROR_BYTES).set(text);
    Atomics.store(words, ERROR_LENGTH, text.length);
  }
  Atomics.add(words, FAILED, 1);
}

/** The first failure's text of a call ("" where none was recorded). */
export function failureText(sync: SharedArrayBuffer): string {
  const n = Atomics.load(new Int32Array(sync, 0, 16), ERROR_LENGTH);
  return n > 0 ? new TextDecoder().decode(new Uint8Array(sync, ERROR_AT, n).slice()) : "";
}

/**
 * The claim function of one thread of a call over `G` schedule workers, and `end`, which
 * counts the worker it holds (if any) as ended: claiming the next one ends the last, so
 * `ENDED` reaches the number handed out once each has been run or has failed.
 */
export function claimer(sync: SharedArrayBuffer, G: number) {
  const words = new Int32Array(sync, 0, 16);
  let open = false;
  const end = () => {
    if (!open) return;
    open = false;
    Atomics.add(words, ENDED, 1);
    Atomics.notify(words, ENDED);
  };
  const claim = () => {
    end();
    const w = Atomics.add(words, CLAIM, 1);
    open = w < G;
    return w;
  };
  return { claim, end };
}

/** The first message a Worker gets: where it reports what it holds (`Status`). */
interface Init {
  status: Float64Array;
}

/**
 * What a Worker holds, written by it after each job and forget: attention scratch bytes (see
 * `memory()`) and WebAssembly memories; and `LOADED`, 1 once its script ran and took `Init`.
 */
const SCRATCH = 0, MEMORIES = 1, LOADED = 2;

/** Sent when a memory this Worker was given is collected on the calling thread. */
interface Forget {
  forgetMemory: number;
}

/** Schedules a Worker keeps by number; past this many it is told to forget them all. */
const KEPT_SCHEDULES = 64;

/** Marks this module's own Workers (a user's `node:worker_threads` Worker is left alone). */
const POOL_MARK = "leanattn-attention-pool";

if (!isMainThread && parentPort && workerData === POOL_MARK) {
  const port = parentPort;
  const schedules = new Map<number, LeanSchedule>();
  const memories = new ReceivedMemories();
  let status: Float64Array = new Float64Array(3);
  const report = () => {
    status[SCRATCH] = simdScratchBytes();
    status[MEMORIES] = memories.size;
  };
  port.on("message", (m: unknown) => {
    const d = unpackViews(m) as Job | Forget | Init;
    if ("status" in d) return void ((status = d.status)[LOADED] = 1);
    if ("forgetMemory" in d) return memories.forget(d.forgetMemory), report();
    const { buf, g, params, scheduleId, work, sync } = d;
    const words = new Int32Array(sync, 0, 16);
    const schedule = schedules.get(scheduleId) ?? d.schedule;
    const { claim, end } = claimer(sync, schedule?.workers.length ?? 0);
    try {
      if (d.memories) buf.memories = memories.unpack(d.memories);
      if (d.forget) schedules.clear();
      if (d.schedule) schedules.set(scheduleId, d.schedule);
      if (!schedule) throw new Error(`schedule ${scheduleId} was never sent (a bug)`);
      if (d.fail === true) throw new Error("failure injected by poolTesting");
      const take = d.fail
        ? () => {
          const w = claim();
          if (w >= schedule.workers.length) return w;
          if (d.fail === "hang") Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
          throw new Error("failure injected by poolTesting");
        }
        : claim;
      if (work) runWorkers(buf, g, { ...params, schedule }, ...work);
      else runClaimed(buf, g, { ...params, schedule }, take);
    } catch (err) {
      recordFailure(sync, err);
    } finally {
      end();
      report();
      Atomics.add(words, DONE, 1);
      Atomics.notify(words, DONE);
    }
  });
}

/** The async call a Worker is in: its shared words and where its death is reported. */
interface InCall {
  sync: Int32Array;
  fail: (e: Error) => void;
}

/** A started Worker, the call it is in and the schedule numbers it has been sent. */
export interface PoolWorker {
  worker: Worker;
  call: InCall | null;
  sent: Set<number>;
  /** Numbers of the WebAssembly memories it has been sent (`_worker_memories.ts`). */
  memories: Set<number>;
  /** What it holds (`SCRATCH`, `MEMORIES`), written by the Worker. */
  status: Float64Array;
}

let pool: PoolWorker[] = [];
/** Why a Worker died before its script ran (then no more are started), or null. */
let startFailure: string | null = null;
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

/**
 * This module as a Worker's script. `node:worker_threads` takes only `file:` and `data:` URLs,
 * so where the library is imported by `http(s)://` URL (from JSR too) the Worker starts from a
 * `data:` module whose one line imports this module's URL: the Worker loads it like the
 * calling thread did (from Deno's module cache, under the same import permissions).
 */
function workerUrl(): URL {
  const self = new URL(import.meta.url);
  if (self.protocol === "file:") return self;
  const source = `import ${JSON.stringify(self.href)};`;
  return new URL(`data:text/javascript,${encodeURIComponent(source)}`);
}

function startWorker(): PoolWorker {
  const p: PoolWorker = {
    worker: new Worker(poolTesting.workerUrl ?? workerUrl(), { workerData: POOL_MARK }),
    call: null,
    sent: new Set(),
    memories: new Set(),
    status: new Float64Array(new SharedArrayBuffer(24)),
  };
  p.worker.unref();
  p.worker.postMessage({ status: p.status } satisfies Init);
  const lost = (why: string) => {
    // Dead before its script ran: the next ones would die the same way, so none is started.
    if (p.status[LOADED] !== 1) startFailure ??= why;
    // The Worker's state is unknown now: fail its call, count it out of it, and start a
    // fresh one next time. (A call of `_attention_pooled.ts` does not wait for a Worker that
    // claimed nothing, and the Workers catch what their jobs throw.)
    if (p.call) {
      p.call.fail(new Error(`attention worker failed: ${why}`));
      Atomics.add(p.call.sync, LOST, 1);
      Atomics.notify(p.call.sync, DONE);
    }
    void p.worker.terminate();
    pool = pool.filter((x) => x !== p);
  };
  p.worker.on("error", (e: Error) => lost(String(e?.message ?? e)));
  p.worker.on("exit", (code: number) => {
    if (pool.includes(p)) lost(`exited with code ${code}`);
  });
  return p;
}

/**
 * The pool's first `n` Workers, started where missing. Throws where a Worker cannot be
 * started, or where one died before its script ran (the Workers started so far stay in the
 * pool).
 */
export function workers(n: number): PoolWorker[] {
  if (startFailure !== null) throw new Error(`a Worker died while loading: ${startFailure}`);
  while (pool.length < n) pool.push(startWorker());
  return pool.slice(0, n);
}

/** Stops the worker threads (they are started again on the next call). */
export function closeAttentionWorkers(): void {
  const all = pool;
  pool = [];
  for (const p of all) void p.worker.terminate();
}

/** Posts one job to `p` (the schedule only the first time `p` gets its number). */
export function post(
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
  if (poolTesting.fail !== null) msg.fail = poolTesting.fail;
  if (kvMemories) msg.memories = shipMemories(kvMemories, p.memories);
  p.worker.postMessage(packViews(msg));
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
  const { s, g, buf, walk, memories, base } = callParts(q, k, v, params, opts.inputs);
  const threads = Math.max(1, Math.min(opts.threads ?? (navigator.hardwareConcurrency || 1), 64));
  // Claimed: a thread for each schedule worker with segments, at most `threads`, all taking
  // workers from the call's counter.
  const sync = callSync();
  const words = new Int32Array(sync, 0, 16);
  const work: Job["work"][] = [];
  if ((opts.split ?? "claimed") === "claimed") {
    for (let i = 0; i < Math.min(threads, Math.max(1, busyWorkers(s))); i++) work.push(null);
  } else {
    const loads = s.workers.map((run) => run.reduce((a, x) => a + x.tileEnd - x.tileStart, 0));
    work.push(...balancedRanges(loads, threads).filter(([a, b]) => b > a));
  }
  const errors: Error[] = [];
  const call: InCall = { sync: words, fail: (e) => errors.push(e) };
  const helpers = workers(Math.max(0, work.length - 1));
  // Referenced while the call awaits them: `Atomics.waitAsync` alone does not keep the
  // event loop alive.
  helpers.forEach((p, i) => {
    p.call = call;
    p.worker.ref();
    post(p, { ...base, sync }, s, work[i + 1], memories);
  });
  let failure: unknown = null;
  try {
    const here = { ...walk, schedule: s };
    const mine = work[0];
    if (mine) runWorkers(buf, g, here, ...mine);
    else if (mine === null) runClaimed(buf, g, here, claimer(sync, s.workers.length).claim);
  } catch (e) {
    failure = e;
  }
  // Every Worker's job has ended before this returns, also when this thread's part threw.
  await allEnded(words, helpers.length);
  for (const p of helpers) {
    p.worker.unref();
    if (p.call === call) p.call = null;
  }
  if (failure === null && Atomics.load(words, FAILED) > 0) {
    failure = new Error(`attention worker failed: ${failureText(sync)}`);
  }
  failure ??= errors[0] ?? null;
  if (failure !== null) throw failure;
  finishCuts(buf, g, s);
  return { out: buf.out, lse: buf.lse };
}

/** Schedule workers with segments. */
export function busyWorkers(s: LeanSchedule): number {
  return s.workers.reduce((a, run) => a + (run.length > 0 ? 1 : 0), 0);
}

/**
 * What both entry points prepare for a call: the geometry, the buffers (their WebAssembly
 * memories apart: they go to each Worker by number, `_worker_memories.ts`) and a job's fields
 * but for its shared buffer.
 */
export function callParts(
  q: TensorInfo,
  k: TensorInfo,
  v: TensorInfo,
  params: AttentionParams,
  inputs?: AttentionInputs,
) {
  const s = params.schedule;
  const g = attentionGeometry(q.shape, walkedKvShape(q.shape, k.shape, params.paged), s);
  const buf = attentionBuffers(q, k, v, g, s, inputs, params.variant);
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
  const { memories, ...posted } = buf;
  const base = { buf: posted, g, params: walk, scheduleId };
  return { s, g, buf, walk, memories, base };
}
