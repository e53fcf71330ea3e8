/**
 * The backend's model of its own speed: compute units, the default lean grid, and the lean
 * grid for one problem from a cost model of the subgroup kernel fitted on an H200
 * (bench/NOTES.md). Planning only; nothing here touches the GPU.
 *
 * @module
 */
import { bandwidthOf, parallelismOf } from "../_gpus.ts";
import type { LeanGridProblem } from "../../backend.ts";
import { type LeanSchedule, leanSchedule } from "../../../schedule/lean_schedule.ts";
import { MAX_WORKERS } from "../../../schedule/limits.ts";
import type { GpuContext } from "../context.ts";
import { bytesPerElement, type DType } from "../../../tensor/dtype.ts";

/** A guess of the number of streaming multiprocessors (compute units) from the description. */
export function computeUnits(ctx: GpuContext): number {
  return parallelismOf(ctx.description).parallelism;
}

/**
 * The lean `grid` (workers) this backend wants: two 256-thread workgroups per compute unit —
 * one resident wave with few partials; measured best against 1, 3, 4 and 8 per unit on an
 * H200 (bench/NOTES.md).
 */
export function defaultGrid(ctx: GpuContext): number {
  return computeUnits(ctx) * 2;
}

/**
 * GPU time of a call's second (reduce) pass, with the barrier before it, in microseconds: on
 * an H200 the reduce pass took 0.6–4.5 µs a call more than the in-kernel merge
 * ({@link FUSED_MERGE_US}) at 1k–16k keys once dispatches share a compute pass (bench/NOTES.md,
 * session 4; it was 17–20 µs with a pass a dispatch, run 4).
 */
const REDUCE_PASS_US = 7;

/**
 * What merging cut units inside the subgroup kernel adds to a call, in microseconds: a
 * device-scope barrier after each cut piece and, on the last piece's worker, one round trip
 * for the pieces' states. An estimate: on an H200 a lean call with the merge took 12 µs where
 * flash's took 9 µs at N = 64 (bench/_floor.ts, bench/NOTES.md session 4).
 */
const FUSED_MERGE_US = 3;

/**
 * Streaming speed of one worker of the subgroup kernel, as a fraction of its compute unit's
 * share of the read ceiling, by resident workers a compute unit (H200, bench/NOTES.md):
 * one-row (MHA) units 0.85 alone and 0.95 two a unit (flash vs lean at 128 units, N ≥ 64k);
 * units of several rows (GQA) hold more registers, fit one a unit and are instruction-bound
 * at ≈ 0.55 (flash (1,32,8) 64k: 19 GB/s a worker; lean's main pass: 51 % of the ceiling).
 */
function streamEfficiency(unitRows: number, workersPerCu: number): number {
  if (unitRows > 1) return 0.55;
  return workersPerCu >= 2 ? 0.95 : 0.85;
}

/** Workers of the subgroup kernel resident on one compute unit (registers; see above). */
function residentWorkers(unitRows: number): number {
  return unitRows > 1 ? 1 : 2;
}

/**
 * Fixed costs of a worker, in microseconds, for each worker a compute unit runs in turn: its
 * start (q loaded, the first K/V round trips) and end (the subgroups' states merged, the
 * output or partial written), and each further segment of its run. Estimates: on an H200
 * (run 13), (1,32,8) 4k took 62.5 µs with 264 workers (two waves of one resident GQA worker a
 * unit, ≈ 2 tiles each) and 50.9 with FlashDecoding's 128 (one wave, 4 tiles each); a
 * one-row (MHA) worker loads and writes a quarter of that, and 1 µs (not 2) fits session 3's
 * measurement that (1,32,32) and (1,64,64) at 2k–4k keys ran 7 % faster on 256 workers than
 * on 128 (bench/NOTES.md).
 */
function workerUs(unitRows: number): number {
  return unitRows > 1 ? 6 : 1;
}
const SEGMENT_US = 2;

/**
 * Streaming speed of runs that start or end inside a unit, relative to runs of whole pieces of
 * one unit, on an H200 with the in-kernel merge (bench/NOTES.md, session 3). Multi-row (GQA):
 * 132 workers on 8 or 128 units were 2–5 % slower than 128 where 3 % less work a worker
 * predicted 3 % faster. One row (MHA): 264 workers on 32, 64 or 128 units were 0.3–1.8 % slower
 * than 256 at ≥ 1 GB and 7 % slower at 2k–4k keys.
 */
const GQA_CROSSING = 0.93;
const MHA_CROSSING = 0.95;

/**
 * One-row runs in step: a resident wave of at least {@link IN_STEP_PIECES} workers a unit (cut
 * units), every run starting a multiple of {@link IN_STEP_BYTES} of K into its unit (whole pieces
 * of one unit, units a multiple of it long). On an H100 over 9–16 pairs of K/V buffers each
 * (bench/NOTES.md, session (22), `probes/kv_pairs.ts`), 256 workers in step ranged up to 9 %
 * between pairs or were slow on all of them, and 264 workers (runs crossing units) took 0.981,
 * 0.969, 0.922, 0.996, 0.933, 0.954 and 1.010 of their mean time at (1,32,32) 64k, (1,64,64) 64k,
 * (1,32,32) 128k, (1,64,64) 32k, (2,32,32) 64k, (2,64,64) 32k and (4,32,32) 16k (mean 0.966);
 * against the crossing charge ({@link MHA_CROSSING}) and 264's 3 % less work a worker that asks
 * ×0.947. Whole units a worker in step were steady ((8,32,32) 16k on 256, (16,32,32) 8k on 512:
 * 264 was 2.6 and 4.8 % slower), as were 512 KiB runs ((1,32,32) 16k) and GQA runs. Runs in
 * step on 1 MiB were placement-bound too (264: 0.971–0.995 of 256's mean time in six rows), but
 * there the fixed costs of 264's second segments outweigh this charge in the model: left at 256.
 */
const IN_STEP = 0.947;
const IN_STEP_BYTES = 2 * 1024 * 1024;
const IN_STEP_PIECES = 2;

/** Whether every run of `s` starts in step (see {@link IN_STEP}) for K rows of `rowBytes`. */
function runsInStep(s: LeanSchedule, rowBytes: number): boolean {
  const step = (keys: number) => (keys * rowBytes) % IN_STEP_BYTES === 0;
  if (!s.units.every((u) => u.keyStart === 0 && step(u.keys))) return false;
  return s.workers.every((run) =>
    run.length === 0 || (run.length === 1 && step(run[0].tileStart * s.plan.tileSize))
  );
}

/**
 * Streaming speed of multi-row runs in two or more waves (one resident a compute unit):
 * (1,32,8) 256k on 264 workers was 7.5 % slower than on 128 with 2.4 % less work a worker.
 */
const GQA_WAVES = 0.9;

/**
 * The lean grid for one problem, from a few stream-K grids: the shape-free `base` (two
 * workers a compute unit), one worker a unit (with equal units nothing is cut: one pass), one
 * worker a compute unit (one wave where only one fits), and the largest multiples of the
 * units within either (runs end on unit boundaries: one segment a worker). Stream-K over any
 * of them is still the lean schedule.
 *
 * Model (known GPUs only; others keep `base`): a run of `t` tiles streams at the compute
 * unit's share of the bandwidth times {@link streamEfficiency}; the busiest compute unit holds
 * `ceil(G / CUs)` runs while they are resident (else whole waves); each segment costs
 * {@link SEGMENT_US}; merging cut units in the kernel {@link FUSED_MERGE_US}, and a second pass
 * {@link REDUCE_PASS_US} when some unit has no keys. The lowest prediction wins, ties to `base`.
 */
export function leanGridFor(ctx: GpuContext, problem: LeanGridProblem, base: number): number {
  const { parallelism: cus, known } = parallelismOf(ctx.description);
  const bw = bandwidthOf(ctx.description);
  if (!known || bw === undefined) return base;
  const plan = problem.plan;
  const units = plan.batch * plan.kvHeads * (plan.qBlocks ?? 1);
  if (units < 1) return base;
  const kvBytes = kvElementBytes(ctx, problem.kvDtype);
  const tileBytes = 2 * plan.tileSize * problem.D * kvBytes;
  const cuBytesPerUs = (bw * 1e3) / cus;
  const predictUs = (grid: number): number => {
    const s = leanSchedule({ ...plan, grid });
    let longest = 0;
    let segments = 0;
    for (const run of s.workers) {
      let t = 0;
      for (const g of run) t += g.tileEnd - g.tileStart;
      longest = Math.max(longest, t);
      segments = Math.max(segments, run.length);
    }
    // Runs the busiest compute unit streams one after another (or shares): resident workers
    // split its bandwidth; past the resident slots, whole waves follow each other.
    const occ = residentWorkers(problem.unitRows);
    const perCu = grid <= cus * occ ? Math.ceil(grid / cus) : Math.ceil(grid / (cus * occ)) * occ;
    // Runs stream slower when they start or end inside a unit, and multi-row (GQA) runs in
    // more than one wave, beyond the fixed costs below (MHA_CROSSING, GQA_CROSSING, GQA_WAVES).
    // One-row runs cross where a worker has several segments (a ragged batch crosses at any
    // grid: (16,32,32) [64k, 1k×15] took 480 µs on 264 workers, 514 on 512, one a unit); for
    // GQA the measured criterion is a grid that is not a multiple of the units (H200,
    // bench/NOTES.md, session 3; ragged GQA batches were measured only at 128 and 132).
    const multi = problem.unitRows > 1;
    const crossing = multi
      ? (grid % units !== 0 ? GQA_CROSSING : 1)
      : (segments > 1 ? MHA_CROSSING : 1);
    // One-row runs of one resident wave, several a unit, that start in step (IN_STEP).
    const inStep = !multi && perCu <= occ && grid >= IN_STEP_PIECES * units &&
        runsInStep(s, problem.D * kvBytes)
      ? IN_STEP
      : 1;
    const eff = streamEfficiency(problem.unitRows, Math.min(perCu, occ)) * crossing * inStep *
      (multi && perCu > occ ? GQA_WAVES : 1);
    const empty = s.units.some((u) => u.tiles === 0);
    // Known GPUs have subgroups: cut units merge in the kernel, empty ones need the reduce pass.
    const second = (empty ? REDUCE_PASS_US : 0) + (s.cuts.length > 0 ? FUSED_MERGE_US : 0);
    const fixed = perCu * (workerUs(problem.unitRows) + Math.max(0, segments - 1) * SEGMENT_US);
    return (perCu * longest * tileBytes) / cuBytesPerUs / eff + fixed + second;
  };
  let best = base;
  let bestUs = predictUs(base);
  const aligned = units * Math.floor(base / units);
  const alignedWave = units * Math.floor(cus / units);
  for (const g of [units, aligned, cus, alignedWave]) {
    if (g < 1 || g === best || g > MAX_WORKERS) continue;
    const us = predictUs(g);
    if (us < bestUs) [best, bestUs] = [g, us];
  }
  return best;
}

/**
 * Bytes a K/V element streams in the kernel: as stored, except float16 without the device's
 * f16 feature (widened to float32 when uploaded). Quantized scales (4 bytes a key at most,
 * 3 % of an int8 row of 128) are left out.
 */
function kvElementBytes(ctx: GpuContext, dtype: DType): number {
  return dtype === "float16" && !ctx.features.f16 ? 4 : bytesPerElement(dtype);
}
