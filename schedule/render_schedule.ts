/**
 * `renderSchedule`: a schedule as an SVG picture — one row per worker, one cell per tile,
 * coloured by the (batch, kv-head) unit it belongs to. Rows of equal length are the point of
 * LeanAttention; red bars mark where a unit was cut between workers (its pieces are merged).
 *
 * @module
 */
import type { LeanSchedule } from "./lean_schedule.ts";
import { ArgumentError, show } from "../tensor/errors.ts";
import { readOptions } from "../tensor/options.ts";

/** Layout knobs of {@link renderSchedule}. */
export interface RenderOptions {
  /** Width of the drawing area for tiles, in px (default 900). */
  width?: number;
  /** Title line (default: a summary of the schedule). */
  title?: string;
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** A distinct colour per unit: golden-angle hues, alternating lightness. */
function colour(u: number): string {
  const hue = (u * 137.508) % 360;
  return `hsl(${hue.toFixed(1)},65%,${u % 2 ? 58 : 70}%)`;
}

function unitLabel(s: LeanSchedule, u: number): string {
  const unit = s.units[u];
  const qb = s.plan.qBlocks > 1 ? ` q${unit.qBlock}` : "";
  return `b${unit.b} h${unit.kvHead}${qb}`;
}

/**
 * Draws `schedule` as a standalone SVG document (a string).
 *
 * @example
 * ```ts
 * import { leanSchedule, renderSchedule } from "../mod.ts";
 * const s = leanSchedule({ batch: 2, kvHeads: 2, kvLens: [512, 130], tileSize: 64, grid: 5 });
 * const svg = renderSchedule(s);
 * console.log(svg.startsWith("<svg")); // true
 * ```
 */
export function renderSchedule(schedule: LeanSchedule, options: RenderOptions = {}): string {
  const opts = readOptions<RenderOptions>("renderSchedule", options, ["width", "title"]);
  if (
    schedule === null || typeof schedule !== "object" || !Array.isArray(schedule.workers) ||
    !Array.isArray(schedule.units) || !Array.isArray(schedule.cuts)
  ) {
    throw new ArgumentError(
      `renderSchedule: expected a schedule (leanSchedule, splitSchedule or a plan's ` +
        `.schedule), got ${show(schedule)}`,
    );
  }
  if (
    opts.width !== undefined &&
    (typeof opts.width !== "number" || !Number.isFinite(opts.width) || opts.width <= 0)
  ) {
    throw new ArgumentError(
      `renderSchedule: width must be a positive number, got ${show(opts.width)}`,
    );
  }
  if (opts.title !== undefined && typeof opts.title !== "string") {
    throw new ArgumentError(`renderSchedule: title must be a string, got ${show(opts.title)}`);
  }
  const s = schedule;
  const G = s.workers.length;
  const loads = s.workers.map((run) => run.reduce((a, g) => a + g.tileEnd - g.tileStart, 0));
  const maxLoad = Math.max(1, ...loads);
  const areaW = opts.width ?? 900;
  const cell = Math.max(0.5, Math.min(18, areaW / maxLoad));
  const rowH = Math.max(2, Math.min(20, 640 / Math.max(1, G)));
  const gap = rowH >= 8 ? 2 : 0;
  const labelW = rowH >= 8 ? 56 : 8;
  const top = 44;
  const cutUnits = new Set(s.cuts.map((c) => c.unit));
  const used = s.units.map((u) => u.tiles > 0);
  const legendUnits = s.units.map((_, i) => i).filter((i) => used[i]);
  const legendCols = Math.max(1, Math.floor((labelW + cell * maxLoad) / 96));
  const shownLegend = legendUnits.slice(0, 48);
  const legendRows = Math.ceil(shownLegend.length / legendCols) +
    (legendUnits.length > shownLegend.length ? 1 : 0);
  const gridH = G * (rowH + gap);
  const title = opts.title ??
    `${
        s.kind === "lean"
          ? "LeanAttention (stream-K)"
          : s.kind === "invariant"
          ? "batch-invariant"
          : "split-KV"
      } schedule: ${s.units.length} units, ` +
      `${s.totalTiles} tiles of ${s.plan.tileSize} keys, ${G} workers, ${s.cuts.length} cut units`;
  // Text widths are estimated (no font metrics in an SVG string): ~7 px a character.
  const width = Math.ceil(Math.max(labelW + cell * maxLoad + 16, title.length * 7.5 + 16, 560));
  const height = Math.ceil(top + gridH + 28 + legendRows * 16 + 12);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="8" y="18" font-size="13" font-weight="bold">${esc(title)}</text>`);
  out.push(
    `<text x="8" y="34" fill="#555">rows: workers · cells: tiles, coloured by unit ` +
      `(batch, kv-head) · red bar: a unit cut between workers</text>`,
  );
  for (let w = 0; w < G; w++) {
    const y = top + w * (rowH + gap);
    if (rowH >= 8) {
      out.push(
        `<text x="${labelW - 6}" y="${
          (y + rowH * 0.75).toFixed(1)
        }" text-anchor="end">w${w}</text>`,
      );
    }
    let x = labelW;
    out.push(`<g data-worker="${w}">`);
    for (const seg of s.workers[w]) {
      const n = seg.tileEnd - seg.tileStart;
      const segW = n * cell;
      out.push(
        `<rect class="segment" data-unit="${seg.unit}" data-tiles="${seg.tileStart}-${seg.tileEnd}" ` +
          `x="${x.toFixed(2)}" y="${y}" width="${segW.toFixed(2)}" height="${rowH}" ` +
          `fill="${colour(seg.unit)}"><title>worker ${w}: ${
            esc(unitLabel(s, seg.unit))
          } tiles ${seg.tileStart}–${seg.tileEnd - 1}${
            seg.partial >= 0 ? ` (partial ${seg.partial})` : ""
          }</title></rect>`,
      );
      if (cell >= 4) {
        for (let t = 1; t < n; t++) {
          const tx = (x + t * cell).toFixed(2);
          out.push(
            `<line x1="${tx}" y1="${y}" x2="${tx}" y2="${
              y + rowH
            }" stroke="white" stroke-opacity="0.6" stroke-width="0.5"/>`,
          );
        }
      }
      if (cutUnits.has(seg.unit)) {
        const bar = Math.min(3, Math.max(1, cell / 3));
        if (!seg.host) {
          out.push(
            `<rect class="cut" x="${
              x.toFixed(2)
            }" y="${y}" width="${bar}" height="${rowH}" fill="#d00"/>`,
          );
        }
        if (!seg.finishing) {
          out.push(
            `<rect class="cut" x="${
              (x + segW - bar).toFixed(2)
            }" y="${y}" width="${bar}" height="${rowH}" fill="#d00"/>`,
          );
        }
      }
      x += segW;
    }
    out.push(`</g>`);
  }
  const ly = top + gridH + 20;
  out.push(`<text x="8" y="${ly - 4}" fill="#555">units:</text>`);
  shownLegend.forEach((u, i) => {
    const lx = 8 + (i % legendCols) * 96;
    const y = ly + Math.floor(i / legendCols) * 16;
    out.push(`<rect x="${lx}" y="${y}" width="12" height="12" fill="${colour(u)}"/>`);
    out.push(
      `<text x="${lx + 16}" y="${y + 10}">${esc(unitLabel(s, u))} (${s.units[u].tiles})</text>`,
    );
  });
  if (legendUnits.length > shownLegend.length) {
    const y = ly + Math.ceil(shownLegend.length / legendCols) * 16;
    out.push(
      `<text x="8" y="${y + 10}">… and ${
        legendUnits.length - shownLegend.length
      } more units</text>`,
    );
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
