/**
 * WebGPU piece runs (`AttentionTuning.pieceRuns`, `_wgsl_piece_runs.ts`): a batch-invariant
 * worker streams its consecutive pieces of a unit as one segment, merging and folding each
 * piece as it goes. They must give the bits of one segment a piece (the knob off), for lean
 * and flash, float32 and float16, units of one, two and four rows, cut and whole units,
 * units of one piece, empty sequences, sinks, and the piece rules a test can set — and the
 * property must actually have run pieces in runs (the launch's kernel says so).
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
import { tensor } from "../tensor/creation.ts";
import { maxAbsDiff } from "../testing/reference.ts";
import { randomArray } from "./_paged.ts";
import { webgpuBackend } from "./_backends.ts";

const SHAPES = [
  { Hq: 8, Hkv: 2, D: 64 }, // four-row units
  { Hq: 4, Hkv: 2, D: 32 }, // two rows
  { Hq: 2, Hkv: 2, D: 32 }, // one row
] as const;

/** The launch the backend runs for `plan` under its tuning now (a cached plan's may be older). */
const launchOf = (gpu: WebGpuBackend, plan: AttentionPlan) =>
  (gpu.prepareAttention(plan, plan.runs[0]) as { launch: WebGpuAttentionLaunch }).launch;

const sameBits = (a: Float32Array, b: Float32Array) => a.every((x, i) => Object.is(x, b[i]));

Deno.test({
  name: "WebGPU piece runs give the bits of one segment a piece",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const gpu = await webgpuBackend();
    if (!gpu) return;
    const saved = gpu.attentionTuning;
    const seed = Date.now() % 1e9;
    console.log(`fast-check seed ${seed}`);
    let inRuns = 0, cases = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 0, max: 6000 }), { minLength: 1, maxLength: 4 }),
          fc.constantFrom("lean" as const, "flash" as const),
          fc.constantFrom("float32" as const, "float16" as const),
          fc.constantFrom(...SHAPES),
          fc.integer({ min: 1, max: 40 }),
          fc.constantFrom(undefined, [256, 16] as const, [128, 32] as const, [64, 8] as const),
          fc.boolean(),
          fc.integer({ min: 1, max: 1e6 }),
          async (lens, algo, dtype, { Hq, Hkv, D }, grid, rule, sinks, s0) => {
            const B = lens.length, N = Math.max(1, ...lens);
            const mk = (n: number, shape: number[], s: number) =>
              tensor(randomArray(n, s), { shape, dtype, backend: gpu });
            const q = mk(B * Hq * D, [B, Hq, 1, D], s0);
            const k = mk(B * Hkv * N * D, [B, Hkv, N, D], s0 + 1);
            const v = mk(B * Hkv * N * D, [B, Hkv, N, D], s0 + 2);
            const opts = {
              kvLens: lens,
              returnLse: true as const,
              batchInvariant: true,
              ...(algo === "lean" ? { grid } : {}),
              ...(sinks ? { sinks: Array.from({ length: Hq }, (_, h) => h / 2 - 1) } : {}),
            };
            const what = `${algo} ${dtype} ${Hq}/${Hkv} heads D ${D} lens [${lens}] grid ${grid} ` +
              `rule ${rule ?? "default"}${sinks ? " sinks" : ""} (seed ${seed})`;
            const run = async (pieceRuns: boolean) => {
              const t: AttentionTuning = { ...saved, pieceRuns };
              if (rule) [t.invariantPiece, t.invariantPieces] = rule;
              gpu.attentionTuning = t;
              const plan = algo === "lean"
                ? leanAttentionPlan(q, k, v, opts)
                : flashAttentionPlan(q, k, v, opts);
              const key = launchOf(gpu, plan).main?.key ?? "";
              const r = algo === "lean"
                ? leanAttention(q, k, v, opts)
                : flashAttention(q, k, v, opts);
              const [out, lse] = [await r.out.data(), await r.lse.data()] as Float32Array[];
              r.out.dispose();
              r.lse.dispose();
              return { out, lse, runs: key.includes(":pr") };
            };
            try {
              const on = await run(true), off = await run(false);
              assert(!off.runs, `${what}: pieceRuns false still ran pieces in runs`);
              cases++;
              if (on.runs) inRuns++;
              assert(
                sameBits(on.out, off.out) && sameBits(on.lse, off.lse),
                `${what}: piece runs differ from one segment a piece by ` +
                  `${maxAbsDiff(on.out, off.out)} (out), ${maxAbsDiff(on.lse, off.lse)} (lse)`,
              );
            } finally {
              for (const x of [q, k, v]) x.dispose();
            }
          },
        ),
        { numRuns: 40, seed },
      );
    } finally {
      gpu.attentionTuning = saved;
    }
    console.log(`${inRuns} of ${cases} cases ran pieces in runs`);
    // The property means something only where the launches ran in runs.
    assert(inRuns >= cases / 4, `only ${inRuns} of ${cases} cases ran pieces in runs`);
  },
});
