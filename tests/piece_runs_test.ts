/**
 * WebGPU piece runs (`AttentionTuning.pieceRuns`, `_wgsl_piece_runs.ts`): a batch-invariant
 * worker streams its consecutive pieces of a unit as one segment, merging and folding each
 * piece as it goes. They must give the bits of one segment a piece (the knob off), for lean
 * and flash, float32 and float16, units of two and four rows, cut and whole units, units of one
 * piece, empty sequences, sinks, one merge barrier a piece or the default, and the piece rules a
 * test can set, two pieces a merge (`pairedPieces`) or one — and the property must actually
 * have run pieces in runs, and the fixed case in pairs (the launch's kernel says so). One-row
 * units never run in runs (`plan.ts`).
 */
import { ok as assert } from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { flashAttention, leanAttention } from "../mod.ts";
import { leanAttentionPlan } from "../attention/lean.ts";
import { flashAttentionPlan } from "../attention/flash.ts";
import type { AttentionPlan } from "../schedule/attention_plan.ts";
import type { WebGpuAttentionLaunch } from "../backends/webgpu/attention/plan.ts";
import type { AttentionTuning } from "../backends/webgpu/attention/tuning.ts";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import { subgroupMinSize } from "../backends/webgpu/attention/subgroup_config.ts";
import { tensor } from "../tensor/creation.ts";
import { maxAbsDiff } from "../testing/reference.ts";
import { randomArray } from "./_paged.ts";
import { webgpuTest } from "./_backends.ts";

const SHAPES = [
  { Hq: 8, Hkv: 2, D: 64 }, // four-row units
  { Hq: 4, Hkv: 2, D: 32 }, // two rows
  { Hq: 2, Hkv: 2, D: 32 }, // one row: never in runs
] as const;

/** The launch the backend runs for `plan` under its tuning now (a cached plan's may be older). */
const launchOf = (gpu: WebGpuBackend, plan: AttentionPlan) =>
  (gpu.prepareAttention(plan, plan.runs[0]) as { launch: WebGpuAttentionLaunch }).launch;

const sameBits = (a: Float32Array, b: Float32Array) => a.every((x, i) => Object.is(x, b[i]));

interface Case {
  lens: number[];
  algo: "lean" | "flash";
  dtype: "float32" | "float16";
  shape: (typeof SHAPES)[number];
  grid: number;
  rule?: readonly [number, number];
  sinks: boolean;
  mergeBarriers?: 1;
  /** `pairedPieces` with the runs (two pieces a merge where the kernel allows). */
  paired?: boolean;
  /** Threads a workgroup (64: one merge round on small subgroups, so pairs run on lavapipe). */
  wg?: 64;
  seed: number;
}

/**
 * Case `c` as it can merge two pieces at a time on this adapter: where its subgroups are small
 * (lavapipe), one merge round, which pairs need, holds every subgroup only of a 64-thread
 * workgroup, so a paired case runs at 64 threads there.
 */
const pairable = (gpu: WebGpuBackend, c: Case): Case =>
  c.paired && (subgroupMinSize(gpu.ctx) ?? 4) < 32 ? { ...c, wg: 64 } : c;

/**
 * Runs `c` with piece runs on and off: whether the first ran in runs (its launch's kernel),
 * and a message if their bits differ or a launch ran in runs where it must not.
 */
async function compare(
  gpu: WebGpuBackend,
  c: Case,
): Promise<{ runs: boolean; paired: boolean; fault?: string }> {
  const { lens, algo, dtype, shape: { Hq, Hkv, D }, rule, mergeBarriers, wg } = c;
  const B = lens.length, N = Math.max(1, ...lens);
  const mk = (n: number, shape: number[], s: number) =>
    tensor(randomArray(n, s), { shape, dtype, backend: gpu });
  const q = mk(B * Hq * D, [B, Hq, 1, D], c.seed);
  const k = mk(B * Hkv * N * D, [B, Hkv, N, D], c.seed + 1);
  const v = mk(B * Hkv * N * D, [B, Hkv, N, D], c.seed + 2);
  const opts = {
    kvLens: lens,
    returnLse: true as const,
    batchInvariant: true,
    ...(algo === "lean" ? { grid: c.grid } : {}),
    ...(c.sinks ? { sinks: Array.from({ length: Hq }, (_, h) => h / 2 - 1) } : {}),
  };
  const saved = gpu.attentionTuning;
  const run = async (pieceRuns: boolean) => {
    const pairedPieces = pieceRuns && (c.paired ?? false);
    const t: AttentionTuning = { ...saved, pieceRuns, mergeBarriers, pairedPieces, wg };
    if (rule) [t.invariantPiece, t.invariantPieces] = rule;
    gpu.attentionTuning = t;
    const plan = algo === "lean"
      ? leanAttentionPlan(q, k, v, opts)
      : flashAttentionPlan(q, k, v, opts);
    const key = launchOf(gpu, plan).main?.key ?? "";
    const r = algo === "lean" ? leanAttention(q, k, v, opts) : flashAttention(q, k, v, opts);
    const [out, lse] = [await r.out.data(), await r.lse.data()] as Float32Array[];
    r.out.dispose();
    r.lse.dispose();
    return { out, lse, runs: key.includes(":pr"), paired: key.includes(":pp") };
  };
  try {
    const on = await run(true), off = await run(false);
    const fault = off.runs
      ? "pieceRuns false still ran pieces in runs"
      : on.paired && !c.paired
      ? "pairs of pieces ran unasked"
      : on.runs && Hq === Hkv
      ? "one-row units ran in runs"
      : !sameBits(on.out, off.out) || !sameBits(on.lse, off.lse)
      ? `piece runs differ from one segment a piece by ${maxAbsDiff(on.out, off.out)} (out), ` +
        `${maxAbsDiff(on.lse, off.lse)} (lse)`
      : undefined;
    return { runs: on.runs, paired: on.paired, fault };
  } finally {
    gpu.attentionTuning = saved;
    for (const x of [q, k, v]) x.dispose();
  }
}

const describe = (c: Case) =>
  `${c.algo} ${c.dtype} ${c.shape.Hq}/${c.shape.Hkv} heads D ${c.shape.D} lens [${c.lens}] ` +
  `grid ${c.grid} rule ${c.rule ?? "default"}${c.sinks ? " sinks" : ""}${
    c.mergeBarriers ? ` mergeBarriers ${c.mergeBarriers}` : ""
  }${c.paired ? " paired" : ""}${c.wg ? ` wg ${c.wg}` : ""}`;

webgpuTest("WebGPU piece runs give the bits of one segment a piece", async (gpu) => {
  const seed = Date.now() % 1e9;
  console.log(`fast-check seed ${seed}`);
  let inRuns = 0, inPairs = 0, cases = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        lens: fc.array(fc.integer({ min: 0, max: 6000 }), { minLength: 1, maxLength: 4 }),
        algo: fc.constantFrom("lean" as const, "flash" as const),
        dtype: fc.constantFrom("float32" as const, "float16" as const),
        shape: fc.constantFrom(...SHAPES),
        grid: fc.integer({ min: 1, max: 40 }),
        rule: fc.constantFrom(undefined, [256, 16] as const, [128, 32] as const, [64, 8] as const),
        sinks: fc.boolean(),
        mergeBarriers: fc.constantFrom(undefined, undefined, 1 as const),
        paired: fc.boolean(),
        wg: fc.constantFrom(undefined, 64 as const),
        seed: fc.integer({ min: 1, max: 1e6 }),
      }).map((c) => pairable(gpu, c)),
      async (c) => {
        const { runs, paired, fault } = await compare(gpu, c);
        cases++;
        if (runs) inRuns++;
        if (paired) inPairs++;
        assert(!fault, `${describe(c)} (seed ${seed}): ${fault}`);
      },
    ),
    // PIECE_RUNS_CASES: more cases on a GPU call (bench/probes/piece_runs_bench.sh).
    { numRuns: Number(Deno.env.get("PIECE_RUNS_CASES") ?? 40), seed },
  );
  // The property means something only where launches ran in runs (about a third do); pairs
  // (about one case in seven) are information here: the fixed case below must run them.
  console.log(`${inRuns} of ${cases} cases ran pieces in runs, ${inPairs} two pieces a merge`);
  assert(inRuns > 0, `none of ${cases} cases ran pieces in runs (seed ${seed})`);
});

webgpuTest("WebGPU piece runs: cut and whole four-row units of several pieces", async (gpu) => {
  // Five workers over 2 kv heads of 5000, 3000 and 7000 keys (1024-key pieces): units cut
  // across workers, runs of several pieces, a unit of one run.
  const c: Case = {
    lens: [5000, 3000, 7000],
    algo: "lean",
    dtype: "float16",
    shape: SHAPES[0],
    grid: 5,
    sinks: false,
    seed: 7,
  };
  const { runs, fault } = await compare(gpu, c);
  assert(runs, `${describe(c)}: did not run in runs`);
  assert(!fault, `${describe(c)}: ${fault}`);
  // The same with two pieces a merge.
  const p = pairable(gpu, { ...c, paired: true });
  const r = await compare(gpu, p);
  assert(r.paired, `${describe(p)}: did not merge two pieces at a time`);
  assert(!r.fault, `${describe(p)}: ${r.fault}`);
});
