/**
 * The regression gate's verdicts (tests/regress/regress.ts), without running its cases: growth,
 * NaN, new, gone and absent-backend rows, and a committed baseline that covers every case.
 */
import { ok as assert } from "node:assert/strict";
import { ALGOS, CASES } from "./regress/cases.ts";
import { type Baseline, compare } from "./regress/regress.ts";

Deno.test("regress gate: growth, NaN, new, gone and absent-backend rows", async () => {
  const row = (out: number, lse: number, dtype = "float32") => ({ dtype, out, lse });
  const old = {
    "cpu/a/flash": row(1e-6, 1e-7),
    "cpu/b/flash": row(1e-6, 1e-7),
    "cpu/c/flash": row(1e-9, 1e-9),
    "cpu/d/flash": row(1e-6, 1e-7),
    "cpu/gone/flash": row(1e-6, 1e-7),
    "cpu/h/flash": row(2e-4, 1e-7, "float16"),
    "webgpu/a/flash": row(1e-6, 1e-7),
  };
  const now = new Map([
    ["cpu/a/flash", row(1.9e-6, 1e-7)], // within 2×
    ["cpu/b/flash", row(2.1e-6, 1e-7)], // grew past 2×
    ["cpu/c/flash", row(9e-8, 9e-8)], // 90× but under the float32 floor (1e-7)
    ["cpu/d/flash", row(NaN, 1e-7)], // a NaN
    ["cpu/h/flash", row(9e-5 * 4, 3e-7, "float16")], // f16 out within 2×, lse past 2× and floor
    ["cpu/new/flash", row(1e-6, 1e-7)],
  ]);
  const run = (ci: boolean, only: string | null = null, update = false) =>
    compare(old, now, new Set(["cpu"]), { ci, update, only });
  const local = run(false);
  const failed = (r: { failures: string[] }) =>
    r.failures.map((f) => f.split(":")[0]).sort().join(" ");
  assert(
    failed(local) === "cpu/b/flash cpu/d/flash cpu/gone/flash cpu/h/flash cpu/new/flash",
    `failures: ${local.failures.join("; ")}`,
  );
  assert(local.skipped === 1, "the absent backend's row is skipped");
  assert(failed(run(true)).includes("webgpu/a/flash"), "CI=true: an absent backend fails");
  assert(!failed(run(true, "cpu")).includes("webgpu"), "--backend cpu skips webgpu under CI");
  assert(!failed(run(false, null, true)).includes("new"), "--update accepts new rows");
  // The committed baseline holds every case × algorithm on both backends, and no NaN.
  const base = JSON.parse(
    await Deno.readTextFile(new URL("./regress/baseline.json", import.meta.url)),
  ) as Baseline;
  for (const backend of ["cpu", "webgpu"]) {
    for (const c of CASES) {
      for (const algo of ALGOS) {
        const r = base.rows[`${backend}/${c.name}/${algo}`];
        assert(
          r && Number.isFinite(r.out) && Number.isFinite(r.lse),
          `${backend}/${c.name}/${algo}`,
        );
      }
    }
  }
});
