/**
 * The CPU benchmark's read ceiling: a streaming WebAssembly SIMD read (16-byte loads into four
 * independent i32x4 sums) over a shared WebAssembly memory, by one thread and by one Worker a
 * core, as fast as this machine can read memory from WebAssembly — what the library's SIMD
 * attention kernels are made of. A JavaScript summing loop (the ceiling before) reads far
 * below the memory's bandwidth.
 *
 * The memory holds `min(bytes, 1 GiB)` of written (so not lazily zero-mapped) data: past the
 * last-level cache a streaming read's bandwidth no longer depends on the size.
 *
 * This file is also the reading Worker's script.
 *
 * @module
 */

import { median } from "./_ceiling.ts";

/** The body of `sum(p, end)`: adds every i32 lane of [p, end) in 64-byte steps. */
const BODY = [
  0x01,
  0x04,
  0x7b, // four v128 locals (2..5)
  0x03,
  0x40, // loop
  ...[0x00, 0x10, 0x20, 0x30].flatMap((off, i) => [
    // acc_i = i32x4.add(acc_i, v128.load offset=off align=16 (p))
    0x20,
    2 + i,
    0x20,
    0x00,
    0xfd,
    0x00,
    0x04,
    off,
    0xfd,
    0xae,
    0x01,
    0x21,
    2 + i,
  ]),
  0x20,
  0x00,
  0x41,
  0xc0,
  0x00,
  0x6a,
  0x21,
  0x00, // p += 64
  0x20,
  0x00,
  0x20,
  0x01,
  0x49,
  0x0d,
  0x00, // br_if 0 (p < end, unsigned)
  0x0b,
  // a = a + b + c + d; return the sum of a's lanes
  0x20,
  0x02,
  0x20,
  0x03,
  0xfd,
  0xae,
  0x01,
  0x20,
  0x04,
  0xfd,
  0xae,
  0x01,
  0x20,
  0x05,
  0xfd,
  0xae,
  0x01,
  0x21,
  0x02,
  0x20,
  0x02,
  0xfd,
  0x1b,
  0x00,
  ...[1, 2, 3].flatMap((lane) => [0x20, 0x02, 0xfd, 0x1b, lane, 0x6a]),
  0x0b,
];

/** A section: id, size, contents (every size here is under 128: one LEB byte). */
const section = (id: number, bytes: number[]) => [id, bytes.length, ...bytes];

const WASM = Uint8Array.from([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00,
  ...section(1, [0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f]), // (i32, i32) -> i32
  // import e.m: shared memory, min 1 page, max 65536 pages
  ...section(2, [0x01, 0x01, 0x65, 0x01, 0x6d, 0x02, 0x03, 0x01, 0x80, 0x80, 0x04]),
  ...section(3, [0x01, 0x00]),
  ...section(7, [0x01, 0x03, 0x73, 0x75, 0x6d, 0x00, 0x00]), // export "sum"
  ...section(10, [0x01, BODY.length, ...BODY]),
]);

const CHUNK = 64;
const MAX_BYTES = 1 << 30;

interface Job {
  memory: WebAssembly.Memory;
  start: number;
  end: number;
  /** Reads of the range a round (several, so a round's messaging is small beside them). */
  times: number;
}

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
const IS_WORKER = typeof scope.WorkerGlobalScope !== "undefined" &&
  scope instanceof scope.WorkerGlobalScope;

function summer(memory: WebAssembly.Memory): (start: number, end: number) => number {
  const inst = new WebAssembly.Instance(new WebAssembly.Module(WASM), { e: { m: memory } });
  return inst.exports.sum as (start: number, end: number) => number;
}

if (IS_WORKER) {
  let sum: ((s: number, e: number) => number) | null = null;
  let mem: WebAssembly.Memory | null = null;
  scope.onmessage = (e: MessageEvent<Job>) => {
    if (mem !== e.data.memory) [mem, sum] = [e.data.memory, summer(e.data.memory)];
    let x = 0;
    for (let i = 0; i < e.data.times; i++) x ^= sum!(e.data.start, e.data.end);
    scope.postMessage(x);
  };
}

/** Posts `jobs[i]` to Worker `i` and resolves when every Worker has answered. */
function workerRound(ws: readonly Worker[], jobs: readonly unknown[]): Promise<void[]> {
  return Promise.all(ws.map((w, i) =>
    new Promise<void>((resolve, reject) => {
      w.onmessage = () => resolve();
      w.onerror = (e) => {
        e.preventDefault();
        reject(new Error(e.message));
      };
      w.postMessage(jobs[i]);
    })
  ));
}

/**
 * Median milliseconds of `reps` rounds (after one untimed) in which one Worker of `script` a
 * job runs its job; the Workers are made for the call and ended after it.
 */
export async function medianRoundMs(
  script: string | URL,
  jobs: readonly unknown[],
  reps: number,
): Promise<number> {
  const ws = jobs.map(() => new Worker(script, { type: "module" }));
  try {
    await workerRound(ws, jobs);
    const ms: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      await workerRound(ws, jobs);
      ms.push(performance.now() - t0);
    }
    return median(ms);
  } finally {
    for (const w of ws) w.terminate();
  }
}

/** Best GB/s of one thread and of `threads` Workers reading `bytes` (≤ 1 GiB) `reps` times. */
export async function wasmReadCeiling(
  bytes: number,
  threads: number,
  reps: number,
): Promise<{ gbs: number; threads: number }> {
  const size = Math.max(CHUNK, Math.floor(Math.min(bytes, MAX_BYTES) / CHUNK) * CHUNK);
  const pages = Math.ceil(size / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  new Uint8Array(memory.buffer).fill(1);
  const sum = summer(memory);
  const one: number[] = [];
  sum(0, size);
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    sum(0, size);
    one.push(performance.now() - t0);
  }
  let best = { gbs: size / (median(one) * 1e6), threads: 1 };
  if (threads > 1) {
    const per = Math.ceil(size / threads / CHUNK) * CHUNK;
    // Each round reads the whole memory `times` times, ≥ 256 MiB, so that posting the jobs
    // and collecting the answers (~0.1 ms a Worker) stays small beside the reads.
    const times = Math.max(1, Math.ceil(2 ** 28 / size));
    const jobs: Job[] = [];
    for (let s = 0; s < size; s += per) {
      jobs.push({ memory, start: s, end: Math.min(size, s + per), times });
    }
    const gbs = (size * times) / ((await medianRoundMs(import.meta.url, jobs, reps)) * 1e6);
    if (gbs > best.gbs) best = { gbs, threads: jobs.length };
  }
  return best;
}

if (import.meta.main && !IS_WORKER) {
  const mb = Number(Deno.args[0] ?? 256);
  const t = navigator.hardwareConcurrency || 1;
  console.log(await wasmReadCeiling(mb * 2 ** 20, t, 5));
}
