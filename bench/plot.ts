/**
 * `deno task plot [results.json]`: draws the speed-up of lean over flash and over each peer
 * against N (both axes log-scaled), one line per configuration, one panel per comparison, as
 * an SVG beside the JSON. Without an argument it takes the newest JSON in `bench/results/`.
 *
 * Colour names the (B, Hq, Hkv) configuration, the dash the dtype and head dim; ragged batches
 * are single diamonds at their longest length. Speed-up is `gpuMs(other) / gpuMs(lean)` on
 * the same shape, so above 1 means lean is faster.
 *
 * @module
 */
import { configKey, type Results, type Row, validateResults } from "./_results.ts";

const COLORS = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#9467bd",
  "#ff7f0e",
  "#17becf",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
];
const DASHES = ["", "6 3", "2 3", "8 3 2 3"];
/** What lean is compared with, in panel order. */
export const COMPARED = [
  "flash",
  "flash-decoding",
  "ort-webgpu",
  "torch-cudnn",
  "torch-flash",
  "torch-efficient",
] as const;

/** One plotted point. */
export interface SpeedupPoint {
  N: number;
  speedup: number;
  ragged: boolean;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function shapeKey(r: Row): string {
  return `${configKey(r)} N${r.N} ${r.kvLens ? r.kvLens.join(",") : ""}`;
}

/** Speed-ups of lean over `other`, grouped by configuration (lines) in N order. */
export function speedups(
  rows: readonly Row[],
  other: string,
  time: (r: Row) => number | null = (r) => r.gpuMs,
): Map<string, SpeedupPoint[]> {
  const lean = new Map<string, Row>();
  for (const r of rows) if (r.algo === "lean" && time(r) && !r.error) lean.set(shapeKey(r), r);
  const lines = new Map<string, SpeedupPoint[]>();
  for (const r of rows) {
    const t = time(r);
    if (r.algo !== other || !t || r.error) continue;
    const l = lean.get(shapeKey(r));
    if (!l) continue;
    const key = configKey(r);
    const pts = lines.get(key) ?? [];
    pts.push({ N: r.N, speedup: t / time(l)!, ragged: r.kvLens !== undefined });
    lines.set(key, pts);
  }
  for (const pts of lines.values()) pts.sort((a, b) => a.N - b.N);
  return lines;
}

function fmtN(n: number): string {
  return n >= 1 << 20 ? `${n / (1 << 20)}M` : n >= 1024 ? `${Math.round(n / 1024)}k` : `${n}`;
}

/** The SVG of a results file. */
export function renderPlot(res: Results): string {
  // CPU runs have no GPU clock: their times are wall clock.
  const time = res.backend === "cpu" ? (r: Row) => r.wallMs : (r: Row) => r.gpuMs;
  const panels = COMPARED.map((o) => ({ other: o, lines: speedups(res.rows, o, time) }))
    .filter((p) => p.lines.size > 0);
  const heads = [...new Set(res.rows.map((r) => `B${r.B} Hq${r.Hq} Hkv${r.Hkv}`))];
  const styles = [
    ...new Set(res.rows.map((r) => `D${r.D} ${r.dtype === "float16" ? "f16" : "f32"}`)),
  ];
  const W = 460, H = 300, M = { l: 66, r: 16, t: 34, b: 44 };
  const cols = Math.min(2, Math.max(1, panels.length));
  const legendH = 24 + 18 * Math.ceil((heads.length + styles.length) / 3);
  const totalW = cols * W;
  const totalH = 40 + Math.max(1, Math.ceil(panels.length / cols)) * H + legendH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${totalW}" height="${totalH}" ` +
      `viewBox="0 0 ${totalW} ${totalH}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${totalW / 2}" y="22" text-anchor="middle" font-size="14">` +
      `${
        esc(
          `Speed-up of lean (${res.backend === "cpu" ? "wall" : "GPU"} time) — ${res.device}, ${
            res.date.slice(0, 10)
          }`,
        )
      }</text>`,
  );
  if (panels.length === 0) {
    out.push(
      `<text x="${totalW / 2}" y="${40 + H / 2}" text-anchor="middle">` +
        `no rows with both lean and another algorithm timed</text>`,
    );
  }
  panels.forEach((p, i) => {
    const x0 = (i % cols) * W, y0 = 40 + Math.floor(i / cols) * H;
    const pts = [...p.lines.values()].flat();
    const nMin = Math.min(...pts.map((q) => q.N)), nMax = Math.max(...pts.map((q) => q.N));
    const lx0 = Math.log2(nMin) - 0.3, lx1 = Math.log2(nMax) + 0.3;
    let ly0 = Math.log2(Math.min(1, ...pts.map((q) => q.speedup))) - 0.2;
    let ly1 = Math.log2(Math.max(1, ...pts.map((q) => q.speedup))) + 0.2;
    if (ly1 - ly0 < 1) {
      ly0 -= 0.5;
      ly1 += 0.5;
    }
    const pw = W - M.l - M.r, ph = H - M.t - M.b;
    const sx = (n: number) => x0 + M.l + (Math.log2(n) - lx0) / (lx1 - lx0) * pw;
    const sy = (s: number) => y0 + M.t + (1 - (Math.log2(s) - ly0) / (ly1 - ly0)) * ph;
    out.push(
      `<g>`,
      `<text x="${x0 + W / 2}" y="${y0 + 20}" text-anchor="middle" font-size="12">` +
        `lean vs ${esc(p.other)}</text>`,
      `<rect x="${x0 + M.l}" y="${
        y0 + M.t
      }" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
    );
    for (let e = Math.ceil(lx0); e <= Math.floor(lx1); e++) {
      const x = sx(2 ** e);
      out.push(
        `<line x1="${x}" x2="${x}" y1="${y0 + M.t}" y2="${y0 + M.t + ph}" stroke="#eee"/>`,
        `<text x="${x}" y="${y0 + M.t + ph + 14}" text-anchor="middle">${fmtN(2 ** e)}</text>`,
      );
    }
    const step = ly1 - ly0 > 6 ? 2 : ly1 - ly0 > 2.5 ? 1 : 0.5;
    for (let e = Math.ceil(ly0 / step) * step; e <= ly1; e += step) {
      const y = sy(2 ** e);
      const label = 2 ** e >= 1 ? `${+(2 ** e).toFixed(2)}×` : `1/${+(2 ** -e).toFixed(2)}×`;
      out.push(
        `<line x1="${x0 + M.l}" x2="${x0 + M.l + pw}" y1="${y}" y2="${y}" stroke="${
          e === 0 ? "#555" : "#eee"
        }"/>`,
        `<text x="${x0 + M.l - 4}" y="${y + 4}" text-anchor="end">${label}</text>`,
      );
    }
    out.push(
      `<text x="${x0 + M.l + pw / 2}" y="${y0 + H - 10}" text-anchor="middle">N (keys)</text>`,
      `<text transform="translate(${x0 + 12} ${y0 + M.t + ph / 2}) rotate(-90)" ` +
        `text-anchor="middle">${esc(`time ${p.other} / time lean`)}</text>`,
    );
    for (const [key, line] of p.lines) {
      const [b, hq, hkv, d, dt] = key.split(" ");
      const color = COLORS[heads.indexOf(`${b} ${hq} ${hkv}`) % COLORS.length];
      const dash = DASHES[styles.indexOf(`${d} ${dt}`) % DASHES.length];
      const plain = line.filter((q) => !q.ragged);
      if (plain.length > 1) {
        out.push(
          `<polyline fill="none" stroke="${color}" stroke-width="1.6"${
            dash ? ` stroke-dasharray="${dash}"` : ""
          } points="${
            plain.map((q) => `${sx(q.N).toFixed(1)},${sy(q.speedup).toFixed(1)}`).join(" ")
          }">` +
            `<title>${esc(key)}</title></polyline>`,
        );
      }
      for (const q of line) {
        const x = sx(q.N).toFixed(1), y = sy(q.speedup).toFixed(1);
        out.push(
          q.ragged
            ? `<path d="M${x} ${+y - 5}l5 5l-5 5l-5 -5z" fill="${color}"><title>${
              esc(`${key} ragged: ${q.speedup.toFixed(2)}×`)
            }</title></path>`
            : `<circle cx="${x}" cy="${y}" r="2.5" fill="${color}"><title>${
              esc(`${key} N=${q.N}: ${q.speedup.toFixed(2)}×`)
            }</title></circle>`,
        );
      }
    }
    out.push(`</g>`);
  });
  // Legend: colours (configs) then dashes (dtype, D).
  const ly = 40 + Math.max(1, Math.ceil(panels.length / cols)) * H + 10;
  const items = [
    ...heads.map((h, i) => ({ label: h, color: COLORS[i % COLORS.length], dash: "" })),
    ...styles.map((s, i) => ({ label: s, color: "#333", dash: DASHES[i % DASHES.length] })),
    { label: "ragged batch", color: "#333", dash: "diamond" },
  ];
  items.forEach((it, i) => {
    const x = 20 + (i % 3) * (totalW - 40) / 3, y = ly + 18 * Math.floor(i / 3);
    out.push(
      it.dash === "diamond"
        ? `<path d="M${x + 12} ${y - 5}l5 5l-5 5l-5 -5z" fill="#333"/>`
        : `<line x1="${x}" x2="${
          x + 24
        }" y1="${y}" y2="${y}" stroke="${it.color}" stroke-width="2"${
          it.dash ? ` stroke-dasharray="${it.dash}"` : ""
        }/>`,
      `<text x="${x + 30}" y="${y + 4}">${esc(it.label)}</text>`,
    );
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** The newest `.json` in a folder, or null. */
export async function newestResults(dir: string): Promise<string | null> {
  let best: { path: string; mtime: number } | null = null;
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.endsWith(".json")) continue;
      const path = `${dir}/${e.name}`;
      const mtime = (await Deno.stat(path)).mtime?.getTime() ?? 0;
      if (!best || mtime > best.mtime) best = { path, mtime };
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return best?.path ?? null;
}

/** Reads a results file, writes the SVG beside it; returns the SVG path. */
export async function plotFile(json: string): Promise<string> {
  const res = validateResults(JSON.parse(await Deno.readTextFile(json)));
  const svg = json.replace(/\.json$/, "") + ".svg";
  await Deno.writeTextFile(svg, renderPlot(res));
  return svg;
}

if (import.meta.main) {
  const arg = Deno.args[0] ?? await newestResults("bench/results");
  if (!arg) {
    console.error("usage: deno task plot [results.json] (no results in bench/results yet)");
    Deno.exit(2);
  }
  console.log(`wrote ${await plotFile(arg)}`);
}
