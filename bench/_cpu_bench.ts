/**
 * `deno task bench --cpu`: flash and lean on the CPU backend as a user calls them
 * (`leanAttention`, `flashAttention`), each schedule's workers spread over every core
 * (`setCpuThreads`: the calling thread and one Worker a further core), against an in-process
 * read ceiling:
 * the same number of bytes of K and V summed as 32-bit integers by as many Workers, reading the
 * very SharedArrayBuffers the attention reads. Times are wall clock (there is no GPU clock):
 * the JSON keeps them in `wallMs` and leaves `gpuMs` null.
 *
 * This file is also the read-ceiling Worker's script.
 *
 * @module
 */
import type { BenchOptions, Case, OwnAlgo } from "./_sweep.ts";
import { buildCases, caseName, readBytes } from "./_sweep.ts";
import { median } from "./_ceiling.ts";
import { maxAbs, maxAbsDiff, type Results, type Row, rowShape } from "./_results.ts";
import { printTable, writeResults } from "./_report.ts";
import { medianRoundMs, wasmReadCeiling } from "./_wasm_read.ts";
import { loadOrtCpu, type OrtCpuPeer } from "./peers/ort_cpu.ts";

interface ReadJob {
  ranges: { buf: SharedArrayBuffer; off: number; len: number }[];
}

// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
const IS_WORKER = typeof scope.WorkerGlobalScope !== "undefined" &&
  scope instanceof scope.WorkerGlobalScope;

/** Sums the 32-bit words of the ranges (four accumulators keep the loads independent). */
export function readSum(ranges: ReadJob["ranges"]): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (const r of ranges) {
    const a = new Int32Array(r.buf, r.off, r.len >> 2);
    const n = a.length - (a.length & 3);
    for (let i = 0; i < n; i += 4) {
      s0 = (s0 + a[i]) | 0;
      s1 = (s1 + a[i + 1]) | 0;
      s2 = (s2 + a[i + 2]) | 0;
      s3 = (s3 + a[i + 3]) | 0;
    }
    for (let i = n; i < a.length; i++) s0 = (s0 + a[i]) | 0;
  }
  return (s0 ^ s1 ^ s2 ^ s3) | 0;
}

if (IS_WORKER) {
  scope.onmessage = (e: MessageEvent<ReadJob>) => {
    scope.postMessage(readSum(e.data.ranges));
  };
}

/** A byte range of a SharedArrayBuffer. */
export interface SharedRange {
  buf: SharedArrayBuffer;
  off: number;
  len: number;
}

/** Splits `total` bytes of `ranges` into `t` nearly equal parts (4-byte aligned). */
export function splitRanges(ranges: readonly SharedRange[], t: number): SharedRange[][] {
  const total = ranges.reduce((a, r) => a + r.len, 0);
  const per = Math.ceil(total / t / 4) * 4;
  const parts: SharedRange[][] = Array.from({ length: t }, () => []);
  let p = 0, room = per;
  for (const r of ranges) {
    let off = r.off, left = r.len;
    while (left > 0) {
      const take = Math.min(left, room);
      parts[Math.min(p, t - 1)].push({ buf: r.buf, off, len: take });
      off += take;
      left -= take;
      room -= take;
      if (room === 0) {
        p++;
        room = per;
      }
    }
  }
  return parts.filter((x) => x.length > 0);
}

/** Best of single-thread and `threads`-Worker read bandwidth over `ranges`, GB/s. */
export async function cpuReadCeiling(
  ranges: readonly SharedRange[],
  threads: number,
  reps: number,
): Promise<{ gbs: number; threads: number }> {
  const bytes = ranges.reduce((a, r) => a + r.len, 0);
  const one: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    readSum([...ranges]);
    one.push(performance.now() - t0);
  }
  let best = { gbs: bytes / (median(one) * 1e6), threads: 1 };
  if (threads > 1) {
    const parts = splitRanges(ranges, threads);
    const jobs = parts.map((ranges) => ({ ranges }) satisfies ReadJob);
    const gbs = bytes / ((await medianRoundMs(import.meta.url, jobs, reps)) * 1e6);
    if (gbs > best.gbs) best = { gbs, threads: parts.length };
  }
  return best;
}

/** Runs the CPU sweep; returns the exit code. */
export async function runCpuBench(opts: BenchOptions): Promise<number> {
  const t0 = performance.now();
  const { cpu } = await import("../backends/cpu/cpu_backend.ts");
  const { cpuValues } = await import("../backends/cpu/internal.ts");
  const { randn } = await import("../tensor/creation.ts");
  const { cpuThreads, setCpuThreads } = await import("../backends/cpu/cpu_backend.ts");
  const ops = {
    flash: (await import("../attention/flash.ts")).flashAttention,
    lean: (await import("../attention/lean.ts")).leanAttention,
  };
  const threads = Math.min(navigator.hardwareConcurrency || 1, 64);
  setCpuThreads(threads);
  const be = cpu();
  const mode = `ops, setCpuThreads(${threads})`;
  console.log(`device: ${be.description} | attention: ${mode}`);
  const cases = buildCases(opts);
  const own = opts.algos.filter((a): a is OwnAlgo =>
    a === "lean" || a === "flash" || a === "flash-decoding"
  ).sort((a, b) => Number(b === "flash") - Number(a === "flash"));
  const rows: Row[] = [];
  let failures = 0;
  let ceilingBest = 0;
  const ortCpu = opts.peers && opts.algos.includes("ort-cpu") ? await loadOrtCpu() : null;
  if (ortCpu && "absent" in ortCpu) console.log(`ort-cpu absent: ${ortCpu.absent}`);
  for (const [ci, c] of cases.entries()) {
    const head = `[${String(ci + 1).padStart(3)}/${cases.length}] ${caseName(c)}`;
    const seed = opts.seed * 3;
    const q = randn([c.B, c.Hq, 1, c.D], { seed, dtype: c.dtype, backend: be });
    const k = randn([c.B, c.Hkv, c.N, c.D], { seed: seed + 1, dtype: c.dtype, backend: be });
    const v = randn([c.B, c.Hkv, c.N, c.D], { seed: seed + 2, dtype: c.dtype, backend: be });
    const bytes = readBytes(c);
    const kv = [cpuValues(k.id), cpuValues(v.id)];
    const ceiling = await cpuReadCeiling(
      kv.map((a) => ({
        buf: a.buffer as SharedArrayBuffer,
        off: a.byteOffset,
        len: Math.floor(bytes / 2 / 4) * 4,
      })),
      threads,
      Math.max(3, Math.min(opts.reps, 10)),
    );
    // The ceiling is the faster of the JS read of the very K/V buffers and a WebAssembly
    // SIMD streaming read of as many bytes (up to 1 GiB): the SIMD read is the real one.
    const simd = await wasmReadCeiling(bytes, threads, Math.max(3, Math.min(opts.reps, 10)));
    if (simd.gbs > ceiling.gbs) Object.assign(ceiling, simd);
    ceilingBest = Math.max(ceilingBest, ceiling.gbs);
    const parts: string[] = [];
    let ref: Float32Array | null = null;
    // Each algorithm's call checked once, then all timed together, round by round.
    const timed: { row: Row; run: () => Promise<unknown> }[] = [];
    const first = rows.length;
    for (const algo of own) {
      const row: Row = { algo, ...rowShape(c), gpuMs: null, wallMs: null, effGBs: null };
      try {
        const run = runner(ops, algo, c, q, k, v);
        const out = await run();
        ref ??= out;
        const d = maxAbsDiff(out, ref);
        row.maxAbsDiff = d;
        row.tol = (c.dtype === "float16" ? 1e-2 : 1e-4) * Math.max(maxAbs(ref), 1e-3);
        if (!(d <= row.tol)) {
          row.error = `wrong result: max abs diff vs flash ${d.toExponential(2)}`;
          failures++;
        }
        row.note = mode;
        timed.push({ row, run });
      } catch (e) {
        failures++;
        row.error = e instanceof Error ? e.message.split("\n")[0] : String(e);
      }
      rows.push(row);
    }
    const ort = ortCpu && "prepare" in ortCpu ? await ortRow(ortCpu, c, q, k, v, ref) : null;
    if (ort) {
      rows.push(ort.row);
      if (ort.run) timed.push({ row: ort.row, run: ort.run });
    } else if (ortCpu && "absent" in ortCpu) {
      rows.push({
        algo: "ort-cpu",
        ...rowShape(c),
        gpuMs: null,
        wallMs: null,
        effGBs: null,
        absent: ortCpu.absent,
      });
    }
    // ORT's thread pool spins on every core for a while after a run, slowing whatever runs
    // next (lean at (1,32,8) 16k: 16.8 ms beside it, 6.1 without; a read ceiling of 61 GB/s
    // right after it where 182 was measured before it; bench/NOTES.md "Session 2026-12-06
    // (6)"): with ORT in the set every timed call, and the next case, waits for it to stop.
    const settleMs = ort ? ORT_SETTLE_MS : 0;
    const ms = await timeInterleaved(timed.map((t) => t.run), opts, settleMs);
    for (const [i, { row }] of timed.entries()) {
      Object.assign(row, timing(ms[i], bytes, ceiling.gbs));
    }
    for (const row of rows.slice(first)) {
      parts.push(
        row.wallMs !== null
          ? `${row.algo} ${row.wallMs.toFixed(2)} ms ${(100 * row.fracCeiling!).toFixed(0)}%`
          : row.error
          ? `${row.algo} FAILED (${row.error})`
          : `${row.algo} absent`,
      );
    }
    if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
    q.dispose();
    k.dispose();
    v.dispose();
    console.log(
      `${head} | ${parts.join(" | ")} | read ceiling ${
        ceiling.gbs.toFixed(1)
      } GB/s (${ceiling.threads} thr) | ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
  }
  const why = cpuThreads().unavailable;
  if (why) console.log(`note: CPU attention ran in one thread: ${why}`);
  const results: Results = {
    device: be.description,
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    ceilingGBs: ceilingBest,
    backend: "cpu",
    args: [...Deno.args],
    inputs: `randn seed ${opts.seed}; times are wall clock (wallMs), gpuMs is null`,
    elapsedS: (performance.now() - t0) / 1000,
    rows,
  };
  printTable(results);
  await writeResults(results, opts.out, `cpu${opts.smoke ? "-smoke" : opts.quick ? "-quick" : ""}`);
  if (failures > 0) {
    console.error(`\n${failures} row(s) FAILED`);
    return 1;
  }
  return 0;
}

type Tensor = import("../tensor/tensor.ts").Tensor;

/** How long the bench waits after ORT's rows for ORT's spinning threads to stop. */
const ORT_SETTLE_MS = 200;

/**
 * Wall times of `opts.reps` calls of each of `runs`, taken in rounds (one call of each run a
 * round, in order) after `opts.warmup` such rounds, so that a drift of the host's speed
 * meets every run alike; with `settleMs`, each call first waits that long.
 */
async function timeInterleaved(
  runs: (() => Promise<unknown>)[],
  opts: BenchOptions,
  settleMs: number,
): Promise<number[][]> {
  const ms = runs.map((): number[] => []);
  for (let i = -opts.warmup; i < opts.reps; i++) {
    for (const [j, run] of runs.entries()) {
      if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
      const s = performance.now();
      await run();
      if (i >= 0) ms[j].push(performance.now() - s);
    }
  }
  return ms;
}

/** A row's timing fields from its call times. */
function timing(ms: number[], bytes: number, ceilingGBs: number): {
  wallMs: number;
  wallCalls: number;
  effGBs: number;
  ceilingGBs: number;
  fracCeiling: number;
} {
  const wallMs = median(ms);
  const effGBs = bytes / (wallMs * 1e6);
  return { wallMs, wallCalls: ms.length, effGBs, ceilingGBs, fracCeiling: effGBs / ceilingGBs };
}

/**
 * The ONNX Runtime native CPU row of a case, checked against flash's output, and its call
 * (none where ORT cannot run the case).
 */
async function ortRow(
  peer: OrtCpuPeer,
  c: Case,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  ref: Float32Array | null,
): Promise<{ row: Row; run?: () => Promise<Float32Array> }> {
  const row: Row = { algo: "ort-cpu", ...rowShape(c), gpuMs: null, wallMs: null, effGBs: null };
  try {
    const host = async (t: Tensor) => {
      const d = await t.data();
      return c.dtype === "float16" ? Float16Array.from(d) : d;
    };
    const run = await peer.prepare({
      ...c,
      q: await host(q),
      k: await host(k),
      v: await host(v),
    });
    const out = await run();
    if (ref) {
      row.maxAbsDiff = maxAbsDiff(out, ref);
      row.tol = (c.dtype === "float16" ? 1e-2 : 1e-4) * Math.max(maxAbs(ref), 1e-3);
      if (!(row.maxAbsDiff <= row.tol)) {
        row.error = `wrong result: max abs diff vs flash ${row.maxAbsDiff.toExponential(2)}`;
      }
    }
    row.note = `onnxruntime-node ${peer.version}, FusedMatMul(transB) → Softmax → MatMul`;
    return { row, run };
  } catch (e) {
    row.absent = `onnxruntime-node cannot run this case: ${
      e instanceof Error ? e.message.split("\n")[0] : String(e)
    }`;
    return { row };
  }
}
/** One timed call of `algo` as a user makes it (the ops, loaded once by the caller). */
function runner(
  ops: {
    flash: typeof import("../attention/flash.ts").flashAttention;
    lean: typeof import("../attention/lean.ts").leanAttention;
  },
  algo: OwnAlgo,
  c: Case,
  q: Tensor,
  k: Tensor,
  v: Tensor,
): () => Promise<Float32Array> {
  const kvLens = c.kvLens;
  return async () => {
    const out = algo === "lean"
      ? ops.lean(q, k, v, { kvLens })
      : ops.flash(q, k, v, { kvLens, numSplits: algo === "flash" ? 1 : "auto" });
    const d = await out.data();
    out.dispose();
    return d as Float32Array;
  };
}
