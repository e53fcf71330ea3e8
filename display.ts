/**
 * Rich display in `deno jupyter` for what has no class of its own. A Tensor displays itself
 * (its `Symbol.for("Jupyter.display")` hook); schedules are plain data, so a cell ends with
 * `scheduleDisplay(schedule)` to draw one as its SVG picture.
 *
 * @module
 */
import { JUPYTER_DISPLAY } from "./tensor/_display.ts";

export { JUPYTER_DISPLAY };
import type { LeanSchedule } from "./schedule/lean_schedule.ts";
import { type RenderOptions, renderSchedule } from "./schedule/render_schedule.ts";

/** A Jupyter MIME bundle that also displays itself when it is a cell's value. */
export interface DisplayBundle {
  /** The bundle: MIME type → content. */
  [JUPYTER_DISPLAY](): Record<string, string>;
}

/**
 * A schedule (`leanSchedule`, `splitSchedule`, `leanAttentionSchedule` or a plan's
 * `.schedule`) as a Jupyter display: its SVG picture (`renderSchedule`) and a one-line text
 * summary. End a notebook cell with it, or pass it to `Deno.jupyter.display`.
 *
 * @example
 * ```ts
 * import { JUPYTER_DISPLAY, leanSchedule, scheduleDisplay } from "./mod.ts";
 * const s = leanSchedule({ batch: 2, kvHeads: 2, kvLens: [512, 130], tileSize: 64, grid: 5 });
 * const bundle = scheduleDisplay(s)[JUPYTER_DISPLAY]();
 * console.log(bundle["image/svg+xml"].startsWith("<svg")); // true
 * ```
 */
export function scheduleDisplay(schedule: LeanSchedule, options?: RenderOptions): DisplayBundle {
  const svg = renderSchedule(schedule, options); // validates both arguments
  const text = `${schedule.kind} schedule: ${schedule.totalTiles} tiles over ` +
    `${schedule.workers.length} workers, ${schedule.cuts.length} cut units`;
  const bundle = { "image/svg+xml": svg, "text/plain": text };
  return { [JUPYTER_DISPLAY]: () => ({ ...bundle }) };
}
