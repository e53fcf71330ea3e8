/**
 * Which form of the subgroups' merge each subgroup kernel carries (`_wgsl_merge.ts`,
 * `MergeSlots.unroll`): unrolled over its slots where K/V are float or e4m3, the loops for int8
 * K/V (the unrolled form made int8 calls up to 19 % slower on an H100; bench/NOTES.md, session
 * (19)). The forms give other bits on an H100, so a kernel must not change form by accident.
 */
import { ok as assert } from "node:assert/strict";
import type { SgConfig } from "../backends/webgpu/attention/subgroup_config.ts";
import { sgWgsl } from "../backends/webgpu/attention/subgroup_kernel.ts";
import { SG_FIXED } from "./_sg_fixed.ts";

/** A one-row float16 kernel of D = 128 with the in-kernel merge (the knobs of `SG_FIXED`). */
const BASE: SgConfig = { ...SG_FIXED, D: 128, R: 1, kv: "f16", q: "f16", L: 8, U: 2, fm: true };

/** Whether kernel text `w` holds the unrolled merge (its first slot's loaded state). */
const unrolled = (w: string) => w.includes("let mlv0 = ");

Deno.test("the subgroup kernels' merge: unrolled, except over int8 K/V", () => {
  for (const R of [1, 4]) {
    for (const mb of [1, 2, 3] as const) {
      const c: SgConfig = { ...BASE, R, mb, ...(R === 4 ? { L: 16, rot: true, lz: true } : {}) };
      const at = `R ${R}, mb ${mb}`;
      assert(unrolled(sgWgsl(c)), `float16 K/V (${at}): expected the unrolled merge`);
      const e4m3: SgConfig = { ...c, kv: "f32", qk: { fmt: "e4m3", sc: "token" } };
      assert(unrolled(sgWgsl(e4m3)), `e4m3 K/V (${at}): expected the unrolled merge`);
      for (const sc of ["token", "head"] as const) {
        const i8: SgConfig = { ...c, kv: "f32", qk: { fmt: "i8", sc } };
        const w = sgWgsl(i8);
        assert(!unrolled(w), `int8 K/V, ${sc} scales (${at}): expected the loops, got unrolled`);
        assert(w.includes("for (var s = 0u;"), `int8 K/V (${at}): the merge's loops are missing`);
      }
    }
  }
});
