/**
 * `deno task bench`: decode attention (one query row per head) on the WebGPU backend across
 * shapes, against the device's own read-bandwidth ceiling and against peers on the same GPU.
 *
 * Per case (dtype, D, B, Hq, Hkv, N or ragged kvLens), the headline (B=1, N=512k) first:
 *  1. skip (listed, with the reason) what cannot run: one key position of K/V over a binding,
 *     more than 90 % of a known GPU's memory held at once by K, V and every row's copies
 *     (`_memory.ts`; else the allocation fails: out of memory), or a case expected to
 *     end after the time budget. K/V over one binding (`maxStorageBufferBindingSize`, e.g.
 *     4 GiB K at B=1, N=512k in float16 on an H200) are stored across buffers cut along N,
 *     and flash and lean run per part and merge (naive and ORT take one buffer: skipped);
 *  2. make q, K, V with `randn` on the WebGPU backend (a K/V larger than 2 Mi elements is a
 *     seeded `randn` block tiled on the GPU with buffer copies, each part of a split K/V
 *     tiled from its own start: drawing gigabytes of normals on the CPU would take minutes,
 *     and bandwidth does not depend on the values);
 *  3. check every algorithm once against flash (max abs diff) and against a float64 reference
 *     of sampled rows (a wrong row fails loudly and the run exits non-zero);
 *  4. GPU time (`gpuMs`): the calls of a row are chained (each call's q is the previous
 *     output, so they run one after another), encoded into one command buffer and queued
 *     behind a heater kernel (spun until the GPU is at its top clock, then ~100 ms more);
 *     four blocks per algorithm of ≈ `--reps`/2 calls (fewer for calls over 5 ms) and at
 *     least 0.5 ms, the algorithms taking turns in another order each round; no call is
 *     stamped: a block's time is the span between the end stamps of the marks (empty timed
 *     passes) before and after it, over its length; the median over the blocks. Every pass of a call
 *     counts (the per-part passes and merges of split K/V too). `gpuSumMs`: the sum of the
 *     passes' own times of one stamped call; wall time: a pipelined loop of calls, one
 *     readback at the end;
 *  5. the ceiling: the streaming-read kernel over the same number of bytes of K and V (of
 *     every part, in binding-sized chunks).
 * Peers: ONNX Runtime Web GQA in-process on our device, PyTorch SDPA by a Python subprocess
 * after our device is released. Results: JSON and an SVG plot under `--out`.
 *
 * The check: sampled output rows are recomputed in float64 on the host from the very values
 * stored (`refDiff`; a row over tolerance fails and the run exits 1), and the whole output is
 * compared with flash's (`maxAbsDiff`). `LEANATTN_BENCH_DEBUG=1` prints the stack of a failure.
 *
 * `--part-bytes N` (a test knob, not in `--help`) stores every tensor over N bytes across
 * buffers, so `deno task bench --smoke --part-bytes 65536` runs the split path of the 4 GiB
 * case on a software adapter.
 *
 * @module
 */
import { progress } from "../testing/progress.ts";
import {
  type Algo,
  buildCases,
  type Case,
  caseName,
  estimateCaseS,
  fmtBytes,
  kvBytes,
  type MemoryLimits,
  naiveSkipReason,
  type OwnAlgo,
  parseArgs,
  readBytes,
  repsFor,
  skipReason,
  splitLimit,
  USAGE,
} from "./_sweep.ts";
import { type CeilingResult, measureCeiling, type ReadRange } from "./_ceiling.ts";
import { maxAbs, maxAbsDiff, type Results, type Row, rowShape } from "./_results.ts";
import { fmtMs, printTable, writeResults } from "./_report.ts";
import { Inputs, runtimeOf, storageOf } from "./_inputs.ts";
import { heatGpu } from "./_heater.ts";
import { type Call, gpuTimesInterleaved, HEAT_MS } from "./_timing.ts";
import { loadOrtPeer, type OrtPeer } from "./peers/ort_webgpu.ts";
import { runTorchPeer, type TorchCase } from "./_torch.ts";
import { deviceMemoryOf } from "./_memory.ts";
import { webgpu, type WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { type VariantAlgo, variantBytes, variantMath } from "./_variants.ts";
import { callOf, isVariant, scheduleInfo, tolerance, wallCallsFor, wallTime } from "./_calls.ts";
import { referenceRow, sampleHeads } from "./_reference.ts";
import {
  chunkRanges,
  contiguousBytes,
  isPaged,
  type PagedAlgo,
  pagedRun,
  pageSizeOf,
} from "./_paged.ts";
import type { KVCache } from "../mod.ts";
import {
  isQuant,
  type QuantAlgo,
  quantReadBytes,
  quantRun,
  quantStoredBytes,
  quantTolerance,
} from "./_quant.ts";

/** Streaming-read bandwidth assumed for time estimates before the first ceiling (GB/s). */
const FIRST_GBS = 300;

function msg(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}

async function main(): Promise<number> {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  let opts;
  try {
    opts = parseArgs(Deno.args);
  } catch (e) {
    console.error(msg(e));
    return 2;
  }
  if (opts.cpu) {
    const { runCpuBench } = await import("./_cpu_bench.ts");
    return await runCpuBench(opts);
  }
  const t0 = performance.now();
  let gpu: WebGpuBackend;
  try {
    gpu = await webgpu(opts.partBytes !== undefined ? { partBytes: opts.partBytes } : {});
  } catch (e) {
    console.error(`no WebGPU backend: ${msg(e)}\n(use --cpu to benchmark the CPU backend)`);
    return 2;
  }
  const dev = gpu.ctx.device;
  const lim = dev.limits;
  console.log(
    `device: ${gpu.description} | maxBuffer ${(lim.maxBufferSize / 2 ** 30).toFixed(2)} GiB, ` +
      `maxBinding ${
        (lim.maxStorageBufferBindingSize / 2 ** 30).toFixed(2)
      } GiB | f16 ${gpu.ctx.features.f16}, ` +
      `timestamps ${gpu.ctx.features.timestamps}, subgroups ${gpu.ctx.features.subgroups}` +
      (gpu.partBytes < lim.maxStorageBufferBindingSize
        ? ` | tensors over ${gpu.partBytes} B split (--part-bytes)`
        : ""),
  );
  const memLim: MemoryLimits = {
    maxBufferSize: lim.maxBufferSize,
    maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
    partBytes: gpu.partBytes,
    budget: deviceMemoryOf(gpu.description),
  };
  const rt = runtimeOf(gpu);
  const cases = buildCases(opts);
  const own = opts.algos.filter((a): a is OwnAlgo | VariantAlgo | PagedAlgo | QuantAlgo =>
    ["lean", "flash", "flash-decoding", "naive"].includes(a) || isVariant(a) || isPaged(a) ||
    isQuant(a)
  );
  const wantOrt = opts.peers && opts.algos.includes("ort-webgpu");
  const torchAlgos = opts.algos.filter((a) => a.startsWith("torch-"));
  const rows: Row[] = [];
  const versions: Record<string, string> = {};
  let failures = 0;

  let ort: OrtPeer | { absent: string } | null = null;
  if (wantOrt) {
    ort = await loadOrtPeer(dev);
    if ("version" in ort) versions["onnxruntime-web"] = ort.version;
    else console.log(`ort-webgpu absent: ${ort.absent}`);
  }

  const inputs = new Inputs(gpu, opts.seed);
  const ceilings = new Map<number, CeilingResult>();
  const torchCases: { c: Case; ceiling?: CeilingResult }[] = [];

  const algoCount = own.length + (wantOrt ? 1 : 0);
  /** The smallest K+V (bytes) that did not fit in GPU memory: larger ones are not tried. */
  let oom: { bytes: number; case: string } | null = null;
  const bestGBs = () => Math.max(FIRST_GBS, ...[...ceilings.values()].map((x) => x.gbs));
  /** The first `n` bytes of `t` (across its parts) as read ranges for the ceiling. */
  const prefix = (t: Tensor, n: number): ReadRange[] => {
    const out: ReadRange[] = [];
    for (const id of storageOf(gpu, t)) {
      const size = Math.min(n, gpu.ctx.byteLength(id));
      if (size > 0) out.push({ buffer: gpu.ctx.buffer(id), size });
      n -= size;
    }
    return out;
  };

  const bar = progress("bench", cases.length);
  for (const [ci, c] of cases.entries()) {
    const shape = rowShape(c);
    const head = `[${String(ci + 1).padStart(3)}/${cases.length}] ${caseName(c)}`;
    bar.update(ci, `${caseName(c)} running`); // each result line below clears it first
    const skipAll = (why: string) => {
      for (const algo of opts.peers ? opts.algos : own) {
        rows.push({ algo, ...shape, gpuMs: null, wallMs: null, effGBs: null, skipped: why });
      }
      bar.clear();
      console.log(`${head} | skipped: ${why}`);
    };
    const elapsed = (performance.now() - t0) / 1000;
    const expect = estimateCaseS(c, algoCount, opts, bestGBs());
    const skip = elapsed + expect > opts.budgetS
      ? `time budget (--budget ${opts.budgetS} s): ${elapsed.toFixed(0)} s elapsed, this case ` +
        `expected to take ~${expect.toFixed(1)} s`
      : oom && 2 * kvBytes(c) >= oom.bytes
      ? `K+V ${fmtBytes(2 * kvBytes(c))} ≥ those of ${oom.case}, which did not fit in GPU memory`
      : skipReason(c, memLim, opts.peers ? opts.algos : own);
    if (skip) {
      skipAll(skip);
      continue;
    }
    const bytes = readBytes(c);
    const parts: string[] = [];
    const rowsBefore = rows.length;
    const made: Tensor[] = [];
    const caches: KVCache[] = [];
    const cleanups: (() => void)[] = [];
    let leanData: Float32Array | null = null;
    try {
      const qi = inputs.query(c);
      made.push(qi.t);
      const q = qi.t;
      const k = inputs.alloc(c);
      made.push(k);
      const v = inputs.alloc(c);
      made.push(v);
      try {
        // Out of GPU memory arrives from the allocations' error scopes, before any copy.
        await rt.settle();
      } catch (e) {
        if (!(e instanceof Error && e.name === "LimitError")) throw e;
        skipAll(`K+V ${fmtBytes(2 * kvBytes(c))} do not fit in GPU memory: ${msg(e)}`);
        if (!oom || 2 * kvBytes(c) < oom.bytes) oom = { bytes: 2 * kvBytes(c), case: caseName(c) };
        continue;
      }
      inputs.fill(c, "k", k);
      inputs.fill(c, "v", v);
      const kParts = gpu.storageParts({ id: k.id, shape: k.shape, dtype: k.dtype });
      const ranges = kParts?.map((p) => [p.n0, p.n1] as const) ?? null;
      const splitNote = kParts
        ? `K/V each stored in ${kParts.length} buffers (over ${splitLimit(memLim).name} ${
          splitLimit(memLim).bytes
        } B), run per part and merged`
        : undefined;
      let ceiling = ceilings.get(bytes);
      if (!ceiling) {
        const readMs = bytes / (bestGBs() * 1e6);
        // The GPU at its top clock first (heatGpu ramps it, then queues ~100 ms of spinning
        // ahead of the read).
        await heatGpu(dev, HEAT_MS, 8 * gpu.parallelism);
        ceiling = await measureCeiling(dev, [...prefix(k, bytes / 2), ...prefix(v, bytes / 2)], {
          reps: repsFor(readMs, opts.reps),
          warmup: opts.warmup,
        });
        ceilings.set(bytes, ceiling);
      }
      // Float64 rows of the output, recomputed on the host from the same stored values.
      const kHost = inputs.host(c, "k"), vHost = inputs.host(c, "v");
      const refRows = sampleHeads(c).map(([b, h]) => ({
        at: (b * c.Hq + h) * c.D,
        vals: referenceRow(c, b, h, qi.host, kHost, vHost, ranges),
      }));
      // The largest |q|₁ of the checked rows (the quantized rows' score error scales with it).
      const qL1 = Math.max(
        ...sampleHeads(c).map(([b, h]) => {
          let a = 0;
          for (let d = 0; d < c.D; d++) a += Math.abs(qi.host[(b * c.Hq + h) * c.D + d]);
          return a;
        }),
      );
      const plainTol = tolerance(c.dtype, Math.max(...refRows.map((r) => maxAbs(r.vals))));
      let plainFlash: Float32Array | null = null;
      try {
        const f = callOf("flash", q, k, v, c)();
        plainFlash = await f.data();
        f.dispose();
      } catch {
        // The flash row below reports the error.
      }
      // A variant row's reference rows carry its math; flash (plain) is no comparison there.
      const variantRefs = (algo: VariantAlgo) =>
        sampleHeads(c).map(([b, h]) => ({
          at: (b * c.Hq + h) * c.D,
          vals: referenceRow(c, b, h, qi.host, kHost, vHost, ranges, variantMath(algo, c, h)),
        }));
      // A paged row's K/V were appended in chunks, each tiled from the block's start
      // (bench/_paged.ts): its reference rows read them as parts of those chunks.
      const pagedRefs = () =>
        sampleHeads(c).map(([b, h]) => ({
          at: (b * c.Hq + h) * c.D,
          vals: referenceRow(c, b, h, qi.host, kHost, vHost, chunkRanges(c, inputs, gpu.partBytes)),
        }));
      const check = (
        data: Float32Array,
        algo?: VariantAlgo | PagedAlgo | QuantAlgo,
      ): Partial<Row> => {
        let refDiff = 0;
        const quant = algo !== undefined && isQuant(algo);
        const refs = !algo || quant ? refRows : isPaged(algo) ? pagedRefs() : variantRefs(algo);
        const flashData = algo && !isPaged(algo) ? null : plainFlash;
        // The rounding bound scales with the row's own output (a variant such as ALiBi
        // averages fewer keys: larger outputs than the plain rows'); a quantized row's is the
        // format's rounding of K and V (bench/_quant.ts).
        const tol = quant
          ? quantTolerance(algo, maxAbs(vHost), maxAbs(kHost), qL1, c.D)
          : algo && !isPaged(algo)
          ? tolerance(c.dtype, Math.max(...refs.map((r) => maxAbs(r.vals))))
          : plainTol;
        for (const r of refs) {
          for (let d = 0; d < c.D; d++) {
            const e = Math.abs(data[r.at + d] - r.vals[d]);
            if (!(e <= refDiff)) refDiff = Number.isNaN(e) ? Infinity : e;
          }
        }
        const out: Partial<Row> = quant ? { refDiff, tol, quantErr: refDiff } : { refDiff, tol };
        if (flashData) out.maxAbsDiff = maxAbsDiff(data, flashData);
        const vsFlash = out.maxAbsDiff === undefined
          ? ""
          : `; vs flash ${out.maxAbsDiff.toExponential(2)}`;
        if (!(refDiff <= tol)) {
          out.error = `wrong result: max abs diff vs the float64 reference ${
            refDiff.toExponential(2)
          } > tol ${tol.toExponential(2)}${vsFlash}`;
        } else if (out.maxAbsDiff !== undefined && !(out.maxAbsDiff <= tol)) {
          out.note = `differs from flash by ${
            out.maxAbsDiff.toExponential(2)
          } but matches the float64 reference: flash is wrong here`;
        }
        return out;
      };
      const finish = (row: Row) => {
        if (splitNote && !row.skipped && !row.absent && !isPaged(row.algo)) {
          row.note = row.note ? `${row.note}; ${splitNote}` : splitNote;
        }
        if (row.gpuMs !== null) {
          const read = isVariant(row.algo)
            ? variantBytes(row.algo, c, bytes)
            : isQuant(row.algo)
            ? quantReadBytes(row.algo, c)
            : bytes;
          // Paged rows read the same K/V bytes (the block table is 4 bytes a page).
          row.effGBs = read / (row.gpuMs * 1e6);
          row.ceilingGBs = ceiling!.gbs;
          row.fracCeiling = row.effGBs / ceiling!.gbs;
        }
        rows.push(row);
        const tag = row.error
          ? `${row.algo} FAILED (${row.error})`
          : row.absent
          ? `${row.algo} absent`
          : row.skipped
          ? `${row.algo} skipped`
          : `${row.algo} ${fmtMs(row.gpuMs)} ms ${
            row.fracCeiling ? (100 * row.fracCeiling).toFixed(0) + "%" : ""
          }`;
        parts.push(tag);
      };

      // Check every algorithm first, then time the ones that ran, interleaved.
      const timed: { row: Row; call: Call }[] = [];
      const settle = (base: Row, e: unknown) => {
        if (e instanceof Error && e.name === "LimitError") {
          // A device limit the library reports by name: the case cannot run, it is not wrong.
          finish({ ...base, skipped: msg(e) });
        } else {
          failures++;
          if (Deno.env.get("LEANATTN_BENCH_DEBUG")) console.error(e);
          finish({ ...base, error: msg(e) });
        }
      };
      for (const algo of own) {
        const base: Row = { algo, ...shape, gpuMs: null, wallMs: null, effGBs: null };
        if (algo === "naive") {
          const why = naiveSkipReason(c, memLim);
          if (why) {
            finish({ ...base, skipped: why });
            continue;
          }
        }
        try {
          let call: Call;
          let extra: Partial<Row> = {};
          let pagedNote = "";
          if (isPaged(algo)) {
            const pr = pagedRun(algo, gpu, inputs, c, q);
            caches.push(pr.cache);
            call = pr.call;
            pagedNote = pr.note;
            extra = { pageSize: pageSizeOf(algo), storedBytes: pr.storedBytes };
          } else if (isQuant(algo)) {
            const qr = quantRun(algo, q, k, v, c);
            cleanups.push(qr.dispose);
            call = qr.call;
            extra = { storedBytes: quantStoredBytes(algo, c) };
          } else {
            call = callOf(algo, q, k, v, c);
            extra = { ...scheduleInfo(algo, q, k, v, c), storedBytes: contiguousBytes(c) };
          }
          const out = call();
          const data = await out.data();
          out.dispose();
          if (algo === "lean") leanData = data;
          const checked = check(
            data,
            isVariant(algo) || isPaged(algo) || isQuant(algo) ? algo : undefined,
          );
          if (isPaged(algo) && leanData) {
            const same = data.every((x, i) => Object.is(x, leanData![i]));
            checked.note = `${
              same
                ? "bit-identical to contiguous lean"
                : `differs from contiguous lean by ${maxAbsDiff(data, leanData).toExponential(2)}`
            }; ${pagedNote}`;
          }
          timed.push({ row: { ...base, ...checked, ...extra }, call });
        } catch (e) {
          settle(base, e);
        }
      }
      try {
        const times = await gpuTimesInterleaved(
          gpu,
          timed.map((t) => t.call),
          opts.reps,
          opts.warmup,
        );
        for (const [i, { row, call }] of timed.entries()) {
          const g = times[i];
          row.gpuMs = g?.ms ?? null;
          if (g) row.gpuSumMs = g.sumMs;
          row.passes = g?.passes;
          row.wallCalls = wallCallsFor(row.gpuMs, opts.smoke);
          row.wallMs = await wallTime(call, row.wallCalls);
          if (row.error) failures++;
          finish(row);
        }
      } catch (e) {
        for (const { row } of timed) if (!rows.includes(row)) settle(row, e);
      }

      if (wantOrt && ort) {
        const base: Row = { algo: "ort-webgpu", ...shape, gpuMs: null, wallMs: null, effGBs: null };
        if ("absent" in ort) {
          finish({ ...base, absent: ort.absent });
        } else if (c.dtype !== "float16") {
          finish({ ...base, absent: "the ORT peer is measured at float16 only" });
        } else if (kParts) {
          finish({
            ...base,
            skipped: `K/V over ${splitLimit(memLim).name} ${
              fmtBytes(splitLimit(memLim).bytes)
            }: ORT's GroupQueryAttention binds each input as one buffer`,
          });
        } else {
          try {
            const r = await ort.run({
              ...c,
              q: gpu.ctx.buffer(q.id),
              k: gpu.ctx.buffer(k.id),
              v: gpu.ctx.buffer(v.id),
              reps: opts.reps,
              warmup: opts.warmup,
              wallCalls: opts.smoke ? 3 : 20,
            });
            const checked = check(r.out);
            const row: Row = {
              ...base,
              gpuMs: r.gpuMs,
              wallMs: r.wallMs,
              passes: r.passes,
              wallCalls: opts.smoke ? 3 : 20,
              ...checked,
              note: "GroupQueryAttention decode, static KV cache (past = present buffers)" +
                (checked.note ? `; ${checked.note}` : ""),
            };
            finish(row);
          } catch (e) {
            finish({ ...base, error: `ORT failed: ${msg(e)}` });
          }
        }
      }
      if (opts.peers && torchAlgos.length > 0) torchCases.push({ c, ceiling });
      bar.clear();
      console.log(
        `${head}${kParts ? ` (K/V in ${kParts.length} parts)` : ""} | ${parts.join(" | ")} | ` +
          `ceiling ${ceiling.gbs.toFixed(0)} GB/s | ${
            ((performance.now() - t0) / 1000).toFixed(0)
          } s`,
      );
    } catch (e) {
      // The ceiling or the flash reference failed: every row of the case not yet written fails.
      failures++;
      const done = new Set(rows.slice(rowsBefore).map((r) => r.algo));
      for (const algo of [...own, ...(wantOrt ? ["ort-webgpu" as const] : [])]) {
        if (done.has(algo)) continue;
        rows.push({
          algo,
          ...shape,
          gpuMs: null,
          wallMs: null,
          effGBs: null,
          error: `case failed: ${msg(e)}`,
        });
      }
      bar.clear();
      console.log(`${head} | FAILED: ${msg(e)}`);
    } finally {
      for (const t of made) t.dispose();
      for (const x of caches) x.dispose();
      for (const f of cleanups) f();
    }
  }
  bar.finish();
  inputs.dispose();
  const device = gpu.description;
  gpu.destroy();

  if (torchAlgos.length > 0 && opts.peers) {
    const tc: TorchCase[] = torchCases.map(({ c }) => ({ ...c }));
    console.log(`running PyTorch SDPA on ${tc.length} cases (budget ${opts.torchBudgetS} s)...`);
    const t = await runTorchPeer(tc, torchAlgos, {
      reps: opts.reps,
      warmup: opts.warmup,
      budgetS: opts.torchBudgetS,
      seed: opts.seed,
    });
    if (t.version) versions.torch = t.version;
    if (t.absent) console.log(`torch absent: ${t.absent}`);
    if (t.cutShort) console.log(`torch cut short: ${t.cutShort}`);
    for (const [i, { c, ceiling }] of torchCases.entries()) {
      for (const algo of torchAlgos) {
        if (algo === "torch-ragged" && !c.kvLens) continue; // ragged batches only
        const r = t.rows.find((x) => x.case === i && x.algo === algo);
        const row: Row = {
          algo: algo as Algo,
          ...rowShape(c),
          gpuMs: r?.gpuMs ?? null,
          wallMs: r?.wallMs ?? null,
          effGBs: null,
        };
        if (!r) row.absent = t.absent ?? t.cutShort ?? "no result from torch_sdpa.py";
        else {
          if (r.absent) row.absent = r.absent;
          if (r.error) row.error = r.error;
          if (r.note) row.note = r.note;
          if (r.maxAbsDiff !== undefined) row.maxAbsDiff = r.maxAbsDiff;
        }
        if (row.gpuMs !== null && ceiling) {
          row.effGBs = readBytes(c) / (row.gpuMs * 1e6);
          row.ceilingGBs = ceiling.gbs;
          row.fracCeiling = row.effGBs / ceiling.gbs;
        }
        rows.push(row);
      }
    }
  }

  const results: Results = {
    device,
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    ceilingGBs: Math.max(0, ...[...ceilings.values()].map((x) => x.gbs)),
    backend: "webgpu",
    versions,
    limits: {
      maxBufferSize: lim.maxBufferSize,
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
    },
    features: { ...gpu.ctx.features },
    args: [...Deno.args],
    inputs: `randn seed ${opts.seed} (q, and K/V up to ${inputs.blockElems} elements); ` +
      `larger K/V: a seeded randn block of ${inputs.blockElems} elements tiled by GPU copies ` +
      `(K/V over ${splitLimit(memLim).bytes} B: stored in parts along N, each tiled from ` +
      `the block's start)`,
    elapsedS: (performance.now() - t0) / 1000,
    rows,
  };
  printTable(results);
  await writeResults(results, opts.out, opts.smoke ? "smoke" : opts.quick ? "quick" : "");
  if (failures > 0) {
    console.error(`\n${failures} row(s) FAILED (wrong result or error): see "error" above`);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  Deno.env.set("RUST_BACKTRACE", "0");
  Deno.exit(await main());
}
