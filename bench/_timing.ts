/**
 * GPU timing of library calls for the benchmarks (`deno task bench`, `bench/probes/tune.ts`): a
 * row's calls as one dependency chain in one command buffer behind a heater, stamped only
 * around blocks of calls (see {@link gpuTimesInterleaved} and bench/NOTES.md, "Timing").
 *
 * @module
 */
import type { PassTiming, WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { randn } from "../tensor/creation.ts";
import { sizeOf } from "../tensor/shape.ts";
import { allocStorage, BASE_ELEMS, tileInto } from "./_inputs.ts";
import { repsFor } from "./_sweep.ts";
import { median } from "./_ceiling.ts";
import { heatGpu } from "./_heater.ts";

/** One call of an algorithm; `qIn` replaces its q (same shape) to chain calls. */
export type Call = (qIn?: Tensor) => Tensor;

/** A call's GPU time (ms): `ms` by the chain (`chained`) or, in the fallback, one call at a
 * time; `sumMs` the sum of its passes' own times and `passes` their count, from one call. */
export type CallTiming = { ms: number; sumMs: number; passes: number; chained: boolean };

/**
 * GPU time of one call from its passes: the span from the first pass's begin timestamp to the
 * last pass's end (it counts gaps between passes and cannot double-count a pass whose begin is
 * stamped before it waits for the previous one), and the plain sum of the passes' own times.
 * Without raw stamps (or with a clock that does not advance) the span falls back to the sum.
 */
export function callTime(passes: readonly PassTiming[]): { span: number; sum: number } {
  const sum = passes.reduce((a, t) => a + t.ms, 0);
  if (passes.length === 0) return { span: 0, sum };
  const s0 = passes[0].startNs;
  const e1 = passes[passes.length - 1].endNs;
  if (s0 === undefined || e1 === undefined || !(e1 > s0)) return { span: sum, sum };
  return { span: (e1 - s0) / 1e6, sum };
}

/**
 * GPU times of several algorithms of one row, as one dependency chain: every call's q is the
 * previous call's output (same shape and dtype), so the GPU runs the calls one after another
 * — as a decode loop would, each layer waiting for the last — with no CPU wait in between.
 * A block of calls of one algorithm is timed between the end stamps of two marks
 * (`WebGpuBackend.mark`: empty timed passes, one before and one after the block; no call is
 * stamped, so the calls share one compute pass as in normal use): it counts the gaps between
 * the calls, one pass boundary a block, and never a neighbour's work. (Calls queued back to back
 * without the chain share no buffer a barrier would order, so the GPU overlapped them and a
 * pass's own stamps counted its neighbours' work; waiting for each call instead let the GPU
 * clock down between calls — on an H200, 2026-11-26, both made the times 1.5–5× too long;
 * bench/NOTES.md, "Timing".) The algorithms take turns in blocks of calls, so a clock change
 * during a row falls on all of them; the median over a row's blocks is reported. Each round
 * takes them in another order ({@link roundOrder}), so no algorithm always follows the same
 * neighbour: with a fixed order, lean always came right after naive and timed 0.6–0.8 µs
 * slower than flash-decoding on byte-identical dispatches at N = 1k on an H200, while in a
 * chain without naive the two agreed within 0.2 µs (bench/NOTES.md, session 4). The chain is
 * one command buffer queued behind heater work (bench/_heater.ts: spun until the clock is up,
 * then ~100 ms more), so the GPU neither waits for the CPU between calls nor starts them at an
 * idle clock. Falls back to one call at a time (read back after each) if the marks cannot be
 * matched up.
 */
export async function gpuTimesInterleaved(
  gpu: WebGpuBackend,
  calls: readonly Call[],
  reps: number,
  warmup: number,
): Promise<(CallTiming | null)[]> {
  if (calls.length === 0) return [];
  if (!gpu.ctx.features.timestamps) return calls.map(() => null);
  for (const call of calls) await warmUp(gpu, call, warmup);
  gpu.setProfiling(true);
  let passes: number[];
  let sums: number[];
  let all: PassTiming[];
  // Blocks of chained calls: [algorithm, length]; the call ahead of the first block is index 0.
  const blocks: [number, number][] = [];
  try {
    await gpu.readTimings();
    passes = [];
    sums = [];
    const spans: number[] = [];
    for (const call of calls) {
      call().dispose();
      const t = await gpu.readTimings();
      passes.push(t.length);
      sums.push(callTime(t).sum);
      spans.push(t.length ? callTime(t).span : 0);
    }
    const longest = Math.max(...spans);
    reps = repsFor(longest, reps);
    const base = Math.max(2, Math.ceil(reps / 2));
    // A block pays one pass boundary (its end mark, ≈ 5 µs on an H200): short calls get blocks
    // of at least MIN_BLOCK_MS, so that costs them ≤ 1–2 % rather than up to 1 µs a call.
    const size = spans.map((t) =>
      Math.min(MAX_BLOCK, Math.max(base, t > 0 ? Math.ceil(MIN_BLOCK_MS / t) : base))
    );
    for (let r = 0; r < 4; r++) {
      for (const i of roundOrder(calls.length, r)) blocks.push([i, size[i]]);
    }
    // The whole chain goes to the GPU as one command buffer, queued right behind ~100 ms of
    // heater work: the GPU neither waits for the CPU between calls nor starts them cold. No
    // call is stamped: the calls share the runtime's compute pass, and a mark (an empty timed
    // pass, WebGpuBackend.mark) follows the call ahead and each block, so a block's time is the
    // span between two marks' end stamps, one pass boundary included.
    gpu.setProfiling(false);
    gpu.flush();
    gpu.holdSubmits(true);
    let cur: Tensor | null = null;
    try {
      const chain = (i: number) => {
        const out: Tensor = cur ? calls[i](cur) : calls[i]();
        cur?.dispose();
        cur = out;
      };
      chain(blocks[0][0]);
      gpu.mark("block");
      for (const [i, n] of blocks) {
        for (let b = 0; b < n; b++) chain(i);
        gpu.mark("block");
      }
      (cur as Tensor | null)?.dispose();
      await heatGpu(gpu.ctx.device, HEAT_MS, 8 * gpu.parallelism);
    } finally {
      gpu.holdSubmits(false);
      gpu.flush();
    }
    all = await gpu.readTimings();
  } finally {
    gpu.setProfiling(false);
  }
  if (passes.includes(0) || all.length !== blocks.length + 1) {
    const out = [];
    for (const call of calls) out.push(await gpuTime(gpu, call, reps, warmup));
    return out;
  }
  const ends = all.map((t) => t.endNs);
  const per: number[][] = calls.map(() => []);
  blocks.forEach(([i, n], b) => {
    const e0 = ends[b];
    const e1 = ends[b + 1];
    if (e0 !== undefined && e1 !== undefined && e1 > e0) per[i].push((e1 - e0) / 1e6 / n);
  });
  if (per.some((p) => p.length === 0)) {
    const out = [];
    for (const call of calls) out.push(await gpuTime(gpu, call, reps, warmup));
    return out;
  }
  return per.map((p, i) => ({ ms: median(p), sumMs: sums[i], passes: passes[i], chained: true }));
}

/**
 * The order of `n` algorithms in round `r` of the chain: a row of a Williams square (first
 * row 0, 1, n−1, 2, n−2, …; row k adds k mod n; for odd n each row also runs reversed). For
 * even n every algorithm directly follows every other once over n rounds (n = 4: the 4 rounds
 * of a row), otherwise the predecessors at least vary, so a neighbour's after-effect lands in
 * few of an algorithm's blocks, which the median then outweighs.
 */
export function roundOrder(n: number, r: number): number[] {
  const first = n > 0 ? [0] : [];
  for (let lo = 1, hi = n - 1; first.length < n;) {
    first.push(lo++);
    if (first.length < n) first.push(hi--);
  }
  // Odd n: the square and its mirror take turns (Williams' design for odd n).
  const row = first.map((x) => (x + (n % 2 ? r >> 1 : r)) % n);
  return n % 2 && r % 2 ? row.reverse() : row;
}

/**
 * Runs `call` `warmup` times (at least 4) and waits for them: pipelines built, pools filled,
 * the first-call costs paid before anything is timed. The GPU clock is not its business: an
 * H200 idles at 345 MHz and needs ≈ 200–300 ms of full load to reach 1980 MHz, which a few
 * calls with waits between them never give (150 ms of them left whole rows at 345–615 MHz,
 * bench/NOTES.md); every timed chain is queued behind `heatGpu`'s ramp instead.
 */
export async function warmUp(gpu: WebGpuBackend, call: Call, warmup: number): Promise<void> {
  for (let i = 0; i < Math.max(warmup, 4); i++) call().dispose();
  gpu.flush();
  await gpu.ctx.device.queue.onSubmittedWorkDone();
}

/** Shortest block of one algorithm's chained calls (ms, by its single stamped call). */
const MIN_BLOCK_MS = 0.5;
/** Longest block, in calls (a 5 µs call gets 100). */
const MAX_BLOCK = 128;

/** GPU time of the heater (bench/_heater.ts) queued right before a row's timed chain. */
export const HEAT_MS = 100;

/**
 * Median GPU time per call (span of its passes, see {@link callTime}) and the median sum of
 * its passes, or null without timestamps.
 */
async function gpuTime(
  gpu: WebGpuBackend,
  call: Call,
  reps: number,
  warmup: number,
): Promise<CallTiming | null> {
  await warmUp(gpu, call, warmup);
  if (!gpu.ctx.features.timestamps) return null;
  gpu.setProfiling(true);
  try {
    await gpu.readTimings();
    call().dispose();
    const first = await gpu.readTimings();
    const passes = first.length;
    if (passes === 0) return null;
    // A 512k case's call takes tens of ms: a few samples give its median.
    reps = repsFor(callTime(first).span, reps);
    await heatGpu(gpu.ctx.device, HEAT_MS, 8 * gpu.parallelism);
    for (let i = 0; i < reps; i++) call().dispose();
    const all = await gpu.readTimings();
    const per: { span: number; sum: number }[] = [];
    if (all.length === passes * reps) {
      for (let i = 0; i < reps; i++) per.push(callTime(all.slice(i * passes, (i + 1) * passes)));
    } else {
      // Pass count varies between calls: read each call on its own.
      for (let i = 0; i < reps; i++) {
        call().dispose();
        per.push(callTime(await gpu.readTimings()));
      }
    }
    return {
      ms: median(per.map((t) => t.span)),
      sumMs: median(per.map((t) => t.sum)),
      passes,
      chained: false,
    };
  } finally {
    gpu.setProfiling(false);
  }
}

/**
 * Random float16 decode inputs of one shape for the probes (seeds 1, 2, 3 for q, K, V), and
 * the bytes of K and V. K and V over {@link BASE_ELEMS} elements tile one seeded block on the
 * GPU, as the benchmark's do (bench/_inputs.ts): drawing a gigabyte on the host took ≈ 40 s.
 */
export function decodeInputs(
  gpu: WebGpuBackend,
  [B, Hq, Hkv, N]: readonly number[],
  D = 128,
): { q: Tensor; k: Tensor; v: Tensor; bytes: number } {
  const opts = { dtype: "float16" as const, backend: gpu };
  const q = randn([B, Hq, 1, D], { seed: 1, ...opts });
  const kv = (seed: number): Tensor => {
    const shape = [B, Hkv, N, D];
    if (sizeOf(shape) <= BASE_ELEMS) return randn(shape, { seed, ...opts });
    const block = randn([BASE_ELEMS], { seed, ...opts });
    const t = allocStorage(gpu, shape, "float16");
    tileInto(gpu, block, t);
    block.dispose();
    return t;
  };
  return { q, k: kv(2), v: kv(3), bytes: 2 * B * Hkv * N * D * 2 };
}
