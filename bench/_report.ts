/**
 * The benchmark's report: the final table on the console and the results files (JSON and the
 * SVG plot beside it), for the WebGPU and the CPU runs alike.
 *
 * @module
 */
import type { Results } from "./_results.ts";
import { renderPlot } from "./plot.ts";

/** Slug of a device description for file names. */
export function deviceSlug(device: string): string {
  return device.toLowerCase().replace(/\(.*?\)/g, "").replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "").slice(0, 48) || "gpu";
}

/** Writes `<gpu>-<date>[-tag].json` and the SVG beside it; returns the JSON path. */
export async function writeResults(r: Results, dir: string, tag: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const base = `${dir}/${deviceSlug(r.device)}-${r.date.slice(0, 10)}${tag ? `-${tag}` : ""}`;
  await Deno.writeTextFile(`${base}.json`, JSON.stringify(r, null, 1) + "\n");
  await Deno.writeTextFile(`${base}.svg`, renderPlot(r));
  console.log(`\nwrote ${base}.json and ${base}.svg`);
  return `${base}.json`;
}

/** Prints the final table. */
export function printTable(r: Results): void {
  const lines: string[][] = [[
    "config",
    "N",
    "algo",
    "gpu ms",
    "wall ms",
    "GB/s",
    "%ceil",
    "vs f64",
    "vs flash",
    "stored",
    "note",
  ]];
  for (const x of r.rows) {
    lines.push([
      `B${x.B} Hq${x.Hq} Hkv${x.Hkv} D${x.D} ${x.dtype === "float16" ? "f16" : "f32"}`,
      x.kvLens ? `[${x.kvLens.length} ragged]` : String(x.N),
      x.algo,
      fmtMs(x.gpuMs),
      fmtMs(x.wallMs),
      x.effGBs === null ? "-" : x.effGBs.toFixed(x.effGBs < 10 ? 2 : 0),
      x.fracCeiling ? (100 * x.fracCeiling).toFixed(0) : "-",
      x.refDiff === undefined ? "" : x.refDiff.toExponential(1),
      x.maxAbsDiff === undefined ? "" : x.maxAbsDiff.toExponential(1),
      x.storedBytes === undefined ? "" : fmtStored(x.storedBytes),
      x.error
        ? `FAILED: ${x.error}`
        : x.skipped
        ? `skipped: ${x.skipped}`
        : x.absent
        ? `absent: ${x.absent}`
        : x.note?.includes("flash is wrong") || x.note?.includes("contiguous lean")
        ? x.note
        : "",
    ]);
  }
  const w = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  console.log("");
  for (const l of lines) {
    console.log(l.map((s, i) => i === l.length - 1 ? s : s.padEnd(w[i])).join("  ").trimEnd());
  }
  console.log(`\nceiling (best streaming read): ${r.ceilingGBs.toFixed(0)} GB/s on ${r.device}`);
}

/** Milliseconds for the console: 4 decimals under 1 ms, else 3; `-` for none. */
export function fmtMs(x: number | null | undefined): string {
  return x === null || x === undefined ? "-" : x < 1 ? x.toFixed(4) : x.toFixed(3);
}

/** Bytes for the table: GiB, MiB or KiB with three significant digits. */
export function fmtStored(x: number): string {
  const [v, u] = x >= 2 ** 30 ? [x / 2 ** 30, "GiB"] : x >= 2 ** 20 ? [x / 2 ** 20, "MiB"] : [
    x / 2 ** 10,
    "KiB",
  ];
  return `${v.toPrecision(3)} ${u}`;
}
