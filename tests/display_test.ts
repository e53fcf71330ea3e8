/**
 * Notebook display hooks, without Jupyter: a Tensor's `Symbol.for("Jupyter.display")` returns
 * a MIME bundle with its shape, dtype, backend and a NumPy-style preview (long dimensions
 * elided); Deno's own Jupyter formatter (reached through Deno's internals, when present) uses
 * it; `scheduleDisplay` gives a schedule's SVG picture.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { JUPYTER_DISPLAY, scheduleDisplay } from "../display.ts";
import { leanSchedule } from "../schedule/lean_schedule.ts";
import { randn, tensor } from "../tensor/creation.ts";
import { ArgumentError } from "../tensor/errors.ts";
import { describeBackends } from "./_backends.ts";
import { expectError } from "./_assert.ts";

describeBackends("a Tensor displays its shape, dtype, backend and a preview", async (backend) => {
  assert(JUPYTER_DISPLAY === Symbol.for("Jupyter.display"));
  const t = tensor([[1, 2.5, -3], [4, 5, 6]], { backend, dtype: "float16" });
  const b = await t[JUPYTER_DISPLAY]();
  assertEquals(
    b["text/plain"],
    `Tensor [2, 3] float16 on ${backend.name}\n[[1, 2.500, -3],\n [4, 5, 6]]`,
  );
  assert(b["text/html"].includes(`<b>Tensor [2, 3] float16 on ${backend.name}</b>`));

  const big = randn([2, 10, 9], { seed: 3, backend });
  const v = await big.data();
  const text = (await big[JUPYTER_DISPLAY]())["text/plain"];
  const rows = text.split("\n");
  assertEquals(rows[0], `Tensor [2, 10, 9] float32 on ${backend.name}`);
  // 3 + "..." + 3 rows per matrix, 3 + "..." + 3 values per row, the first and last shown.
  assert(rows[1].startsWith(`[[[${v[0].toPrecision(4)}, `), rows[1]);
  assert(rows[1].includes(", ..., "), rows[1]);
  assert(text.endsWith(`${v[v.length - 1].toPrecision(4)}]]]`), text);
  assertEquals(rows.filter((r) => r.trim() === "...,").length, 2);

  const scalar = tensor(7, { backend });
  assertEquals((await scalar[JUPYTER_DISPLAY]())["text/plain"].split("\n")[1], "7");
  for (const x of [t, big, scalar]) x.dispose();
  assert((await t[JUPYTER_DISPLAY]())["text/plain"].endsWith("(disposed)"));
});

Deno.test("Deno's Jupyter formatter renders a Tensor with its hook", async () => {
  // deno-lint-ignore no-explicit-any
  const internal = (Deno as any)[(Deno as any).internal];
  const format = internal?.jupyter?.formatInner as ((x: unknown) => Promise<unknown>) | undefined;
  if (!format) {
    console.warn("  (Deno's internal Jupyter formatter is not reachable here: skipped)");
    return;
  }
  const t = tensor([1, 2], {});
  assertEquals(await format(t), await t[JUPYTER_DISPLAY]());
  const s = scheduleDisplay(
    leanSchedule({ batch: 1, kvHeads: 1, kvLens: [256], tileSize: 64, grid: 3 }),
  );
  assertEquals(await format(s), s[JUPYTER_DISPLAY]());
  t.dispose();
});

Deno.test("scheduleDisplay: the schedule's SVG and a summary; bad input is an ArgumentError", () => {
  const s = leanSchedule({ batch: 2, kvHeads: 2, kvLens: [512, 130], tileSize: 64, grid: 5 });
  const b = scheduleDisplay(s, { title: "lean" })[JUPYTER_DISPLAY]();
  assert(b["image/svg+xml"].startsWith("<svg"), b["image/svg+xml"].slice(0, 40));
  assert(b["image/svg+xml"].includes("lean"));
  assertEquals(
    b["text/plain"],
    `lean schedule: ${s.totalTiles} tiles over 5 workers, ${s.cuts.length} cut units`,
  );
  expectError(
    ArgumentError,
    () => scheduleDisplay({} as never),
    ["renderSchedule"],
    "not a schedule",
  );
  expectError(ArgumentError, () => scheduleDisplay(s, { widht: 3 } as never), ["widht"], "option");
});
