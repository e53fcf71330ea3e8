/**
 * The WebGPU attention kernel's in-kernel merge of cut units (lean and flash-decoding
 * schedules): the same bits as the separate reduce pass, with and without prefetching, with
 * the merge deferred to a worker's end, with one, two or three end-of-segment barriers, and the
 * float64 reference (also in workgroups of 96 and 384 threads, not powers of two).
 */
import { plainRun } from "../schedule/attention_plan.ts";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { webgpuAttention } from "../backends/webgpu/internal.ts";
import { leanSchedule, splitSchedule } from "../schedule/lean_schedule.ts";
import { epsilon } from "../tensor/dtype.ts";
import { normals } from "../tensor/random.ts";
import { referenceAttention, type RefInput } from "../testing/reference.ts";
import { webgpuBackend } from "./_backends.ts";
import { recordPipelines } from "./_pipeline_keys.ts";
import { subgroupMinSize } from "../backends/webgpu/attention/subgroup_config.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const EPS32 = epsilon("float32");

Deno.test({
  name:
    "in-kernel merge of cut units: the same bits as the reduce pass (and with prefetch), and the reference",
  ...opts,
  fn: async () => {
    const b = await webgpuBackend();
    if (!b) return;
    // Lean (pieces of 2–3 workers a unit), flash-decoding with 19 splits (more pieces than
    // the merge loads at once), empty rows beside cut ones, causal prefill in query blocks
    // (row passes), GQA and MHA, a NaN key: each through the subgroup kernel with the cut
    // units merged by their last piece's workgroup (`fusedMerge`) and by the reduce pass.
    type Case = Pick<RefInput, "B" | "Hq" | "Hkv" | "Sq" | "N" | "D"> & {
      kvLens: number[];
      grid: number;
      splits?: number;
      nanAt?: number;
    };
    const cases: Case[] = [
      { B: 2, Hq: 8, Hkv: 2, Sq: 1, N: 700, D: 128, kvLens: [700, 0], grid: 7 },
      { B: 1, Hq: 4, Hkv: 4, Sq: 1, N: 1000, D: 64, kvLens: [999], grid: 9 },
      { B: 2, Hq: 8, Hkv: 2, Sq: 1, N: 650, D: 64, kvLens: [650, 333], grid: 0, splits: 19 },
      { B: 2, Hq: 4, Hkv: 1, Sq: 6, N: 200, D: 64, kvLens: [5, 150], grid: 5 },
      {
        B: 1,
        Hq: 8,
        Hkv: 2,
        Sq: 1,
        N: 500,
        D: 64,
        kvLens: [500],
        grid: 6,
        nanAt: 0.3,
      },
    ];
    // The pipelines each call asks for (the subgroup kernel's key says whether it merges).
    const { ctx, keys } = recordPipelines(b.ctx);
    let sgCases = 0;
    for (const [ci, c] of cases.entries()) {
      const causal = c.Sq > 1;
      const qBlocks = c.Sq > 1 ? 2 : 1;
      const qd = normals(c.B * c.Hq * c.Sq * c.D, 100 + ci);
      const kd = normals(c.B * c.Hkv * c.N * c.D, 200 + ci);
      const vd = normals(c.B * c.Hkv * c.N * c.D, 300 + ci);
      if (c.nanAt !== undefined) kd[Math.floor(c.nanAt * kd.length)] = NaN;
      const up = (d: Float32Array, shape: number[]) => ({
        id: b.upload(d, "float32", shape),
        shape,
        dtype: "float32" as const,
      });
      const q = up(qd, [c.B, c.Hq, c.Sq, c.D]);
      const k = up(kd, [c.B, c.Hkv, c.N, c.D]);
      const v = up(vd, [c.B, c.Hkv, c.N, c.D]);
      const plan = { batch: c.B, kvHeads: c.Hkv, kvLens: c.kvLens, qBlocks, tileSize: 16 };
      const schedule = c.splits
        ? splitSchedule({ ...plan, numSplits: c.splits })
        : leanSchedule({ ...plan, grid: c.grid });
      assert(schedule.cuts.length > 0, `case ${ci}: no unit is cut`);
      const params = plainRun({
        algo: c.splits ? "flash-decoding" as const : "lean" as const,
        scale: 1 / Math.sqrt(c.D),
        causal,
        kvLens: Int32Array.from(c.kvLens),
        schedule,
      });
      const rows = c.B * c.Hq * c.Sq;
      type Run = { out: Float32Array; lse: Float32Array; keys: string[] };
      const run = async (
        fusedMerge: boolean,
        pf?: boolean,
        deferMerge?: boolean,
        more: { mergeBarriers?: 1 | 2 | 3; wg?: number } = {},
      ): Promise<Run> => {
        keys.length = 0;
        const tuning = { kernel: "sg" as const, fusedMerge, pf, deferMerge, ...more };
        const r = webgpuAttention(ctx, q, k, v, params, tuning);
        const out = await b.read(r.out, "float32", rows * c.D);
        const lse = await b.read(r.lse, "float32", rows);
        b.release(r.out);
        b.release(r.lse);
        return { out, lse, keys: [...keys] };
      };
      const fused = await run(true);
      const twoPass = await run(false);
      // Prefetching the next batch (the default for long GQA runs) changes when keys load,
      // not the arithmetic: the same bits.
      const prefetched = await run(true, true);
      // Publishing a worker's partial states once at its end: the same fold, the same bits.
      const deferred = await run(true, undefined, true);
      // The end-of-segment merge with three barriers, two (the default for multi-row units)
      // or one (with two alternating copies of its arrays): the same arithmetic in the same
      // order, the same bits. Its one-round path needs at most 8 subgroups a workgroup: 64
      // threads where subgroups have 8 lanes (lavapipe), the default 256 where they have 32.
      const fewer = [
        await run(true, undefined, undefined, { mergeBarriers: 3 }),
        await run(true, undefined, undefined, { mergeBarriers: 2 }),
        await run(true, true, true, { mergeBarriers: 1 }),
      ];
      const small = [1, 2, 3].map((n) => ({ mergeBarriers: n as 1 | 2 | 3, wg: 64 }));
      const small3 = await run(true, undefined, undefined, small[2]);
      const smallOther = [
        small3,
        await run(true, undefined, undefined, small[1]),
        await run(true, true, true, small[0]),
      ];
      // Where the subgroup kernel applies (not for every shape on every device: lanes a key
      // follow the subgroup size), cut units merge in it; else the reduce pass merges them.
      const empty = c.kvLens.includes(0);
      if (fused.keys[0].startsWith("attn-sg")) {
        sgCases++;
        assert(fused.keys[0].includes(":fmtrue"), `case ${ci}: ${fused.keys}`);
        assertEquals(fused.keys.length, empty ? 2 : 1, `case ${ci}: ${fused.keys}`);
        assert(twoPass.keys[0].includes(":fmfalse"), `case ${ci}: ${twoPass.keys}`);
        assert(deferred.keys[0].includes(":dm"), `case ${ci}: ${deferred.keys}`);
        assert(!fewer[0].keys[0].includes(":mb"), `case ${ci}: ${fewer[0].keys}`);
        assert(fewer[1].keys[0].includes(":mb2"), `case ${ci}: ${fewer[1].keys}`);
        assert(fewer[2].keys[0].includes(":mb1"), `case ${ci}: ${fewer[2].keys}`);
      } else assertEquals(fused.keys, twoPass.keys);
      assertEquals(twoPass.keys.length, 2, `case ${ci}: ${twoPass.keys}`);
      const same = (x: Float32Array, y: Float32Array) =>
        x.every((a, i) => Object.is(a, y[i]) || (Number.isNaN(a) && Number.isNaN(y[i])));
      assert(same(fused.out, twoPass.out), `case ${ci}: outputs differ from the reduce pass`);
      assert(same(fused.lse, twoPass.lse), `case ${ci}: lse differ from the reduce pass`);
      assert(same(fused.out, prefetched.out), `case ${ci}: prefetching changed the outputs`);
      assert(same(fused.lse, prefetched.lse), `case ${ci}: prefetching changed the lse`);
      assert(same(fused.out, deferred.out), `case ${ci}: deferring the merge changed the outputs`);
      assert(same(fused.lse, deferred.lse), `case ${ci}: deferring the merge changed the lse`);
      for (const [i, f] of fewer.entries()) {
        const n = 3 - i;
        assert(same(fused.out, f.out), `case ${ci}: ${n} merge barriers changed the outputs`);
        assert(same(fused.lse, f.lse), `case ${ci}: ${n} merge barriers changed the lse`);
        const g = smallOther[i];
        assert(same(small3.out, g.out), `case ${ci}: wg 64, ${n} barriers changed the outputs`);
        assert(same(small3.lse, g.lse), `case ${ci}: wg 64, ${n} barriers changed the lse`);
      }
      // Workgroups whose size is not a power of two (more warps a multiprocessor where the
      // registers allow; the `wg` knob takes multiples of 32): other bits, the same reference.
      const odd: [number, Run][] = [];
      for (const wg of [96, 384]) odd.push([wg, await run(true, undefined, undefined, { wg })]);
      const ref = referenceAttention({ q: qd, k: kd, v: vd, ...c, causal });
      const tol = 8 * EPS32 * Math.max(1, Math.log2(c.N)) * 4;
      const matchesRef = (r: Run, at: string) => {
        for (let i = 0; i < rows * c.D; i++) {
          const [a, e] = [r.out[i], ref.out[i]];
          if (Number.isNaN(e)) assert(Number.isNaN(a), `${at}: out[${i}] ${a}, want NaN`);
          else assert(Math.abs(a - e) <= tol, `${at}: out[${i}] ${a}, want ${e} ± ${tol}`);
        }
        for (let i = 0; i < rows; i++) {
          const [a, e] = [r.lse[i], ref.lse[i]];
          if (Number.isNaN(e) || e === -Infinity) {
            assert(
              Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e)),
              `${at}: lse[${i}] ${a}, want ${e}`,
            );
          } else {
            assert(
              Math.abs(a - e) <= tol * Math.max(1, Math.abs(e)),
              `${at}: lse[${i}] ${a}, want ${e}`,
            );
          }
        }
      };
      matchesRef(fused, `case ${ci}`);
      for (const [wg, r] of odd) {
        const at = `case ${ci}, wg ${wg}`;
        // The subgroup kernel ran at that size where it runs at all (96 needs subgroups of at
        // most 32 lanes).
        if (fused.keys[0].startsWith("attn-sg") && (subgroupMinSize(b.ctx) ?? 8) <= 32) {
          assert(r.keys[0].includes(`:wg${wg}:`), `${at}: ran ${r.keys}`);
        }
        matchesRef(r, at);
      }
      for (const t of [q, k, v]) b.release(t.id);
    }
    if (b.features.subgroups) assert(sgCases >= 4, `${sgCases} cases ran the subgroup kernel`);
  },
});
