/**
 * bench/goals.ts reads the open issues' figures off a bench JSON: checked on a hand-made document
 * whose figures are known (a geometric mean of 0.5, 2 and 0.97; ragged, skipped and unmatched rows
 * that must not count).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type BenchDoc, goalLines, type Row } from "../bench/goals.ts";

const row = (
  algo: string,
  [B, Hq, Hkv, N]: number[],
  gpuMs: number | null,
  more: Partial<Row> = {},
): Row => ({ algo, B, Hq, Hkv, N, gpuMs, ...more });

const DOC: BenchDoc = {
  device: "test GPU",
  date: "2026-12-07",
  rows: [
    row("lean", [1, 32, 8, 4096], 0.02, { fracCeiling: 0.55 }),
    row("torch-cudnn", [1, 32, 8, 4096], 0.01),
    row("lean-invariant", [1, 32, 8, 4096], 0.022),
    row("lean", [1, 32, 32, 65536], 0.1, { fracCeiling: 0.95 }),
    row("torch-cudnn", [1, 32, 32, 65536], 0.2),
    row("lean-int8", [1, 32, 32, 65536], 0.05, { fracCeiling: 0.92, quantErr: 3.7e-4 }),
    row("lean", [4, 32, 8, 65536], 0.1, { fracCeiling: 0.85 }),
    row("torch-cudnn", [4, 32, 8, 65536], 0.097),
    // Ragged: cuDNN gets a padded mask, so the row stays out of the uniform figures.
    row("lean", [4, 32, 8, 131072], 0.1, { kvLens: [512, 131072], fracCeiling: 0.5 }),
    row("torch-cudnn", [4, 32, 8, 131072], 1.0, { kvLens: [512, 131072] }),
    // Skipped by cuDNN, and a cuDNN row with no lean row: neither counts.
    row("lean", [16, 32, 8, 65536], 1.0, { fracCeiling: 0.95 }),
    row("torch-cudnn", [16, 32, 8, 65536], null),
    row("torch-cudnn", [16, 32, 32, 65536], 5.0),
  ],
};

Deno.test("bench/goals.ts: the uniform-row figures of a known document", () => {
  const lines = goalLines(DOC);
  const line = (start: string) => {
    const l = lines.find((x) => x.startsWith(start));
    assert(l, `no line "${start}…" in:\n${lines.join("\n")}`);
    return l;
  };
  assertEquals(lines[0], "test GPU, 2026-12-07");
  const g = Math.cbrt(0.5 * 2 * 0.97).toFixed(3);
  assertEquals(
    line("#20.1 geomean"),
    `#20.1 geomean × cuDNN, uniform rows: ${g} (3 rows; 0.50–2.00)`,
  );
  assertEquals(
    line("#20.1 N ≥ 64k"),
    "#20.1 N ≥ 64k rows ≥ 0.98× cuDNN: 1 of 2; below: (4,32,8) 64k 0.970",
  );
  assertEquals(
    line("#20.1 N ≥ 16k"),
    "#20.1 N ≥ 16k rows ≥ 90 % of ceiling: 2 of 3; below: (4,32,8) 64k 85.0 %",
  );
  assertEquals(line("#20.1 (1,32,8) 4k"), "#20.1 (1,32,8) 4k: 55.0 % of ceiling (goal 75 %)");
  assertEquals(line("#20.3"), "#20.3 lean-invariant over lean, %: (1,32,8) 4k 10.0");
  assertEquals(
    lines[lines.indexOf(line("#17 lean-int8")) + 1],
    "  (1,32,32) 64k: 0.50 of f16, 92.0 % ceil, 4.00× cuDNN, err 3.7e-4",
  );
});

Deno.test("bench/goals.ts: a CPU bench's lean against ORT native, by wall time", () => {
  const lines = goalLines({
    device: "CPU",
    date: "2026-12-07",
    rows: [
      row("lean", [1, 32, 8, 16384], null, { wallMs: 4.5 }),
      row("ort-cpu", [1, 32, 8, 16384], null, { wallMs: 3 }),
      row("lean", [4, 32, 8, 16384], null, { wallMs: 12 }),
      row("ort-cpu", [4, 32, 8, 16384], null, { wallMs: null }), // did not run: left out
    ],
  });
  assertEquals(lines, [
    "CPU, 2026-12-07",
    "#20.4 lean / ORT native, wall ms: (1,32,8) 16k 4.50 / 3.00 = 1.50",
  ]);
});
