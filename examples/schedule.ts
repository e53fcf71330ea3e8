/**
 * Draws the LeanAttention schedule of a ragged batch as an SVG and prints how balanced it is.
 *
 *     deno task schedule [--batch 4 --kv-heads 2 --lens 512,2048,130,1000 --tile 64 --grid 13
 *                         --out schedule.svg] [--split N]
 *
 * `--split N` draws the flash-decoding partition with N splits instead, for comparison.
 *
 * @module
 */
import { type LeanSchedule, leanSchedule, splitSchedule } from "../schedule/lean_schedule.ts";
import { renderSchedule } from "../schedule/render_schedule.ts";

function parse(args: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf("=");
    if (eq > 0) m.set(a.slice(2, eq), a.slice(eq + 1));
    else m.set(a.slice(2), args[++i] ?? "");
  }
  return m;
}

function int(m: Map<string, string>, key: string, dflt: number): number {
  const s = m.get(key);
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`--${key}: expected an integer, got ${s}`);
  return n;
}

function loads(s: LeanSchedule): number[] {
  return s.workers.map((run) => run.reduce((a, g) => a + g.tileEnd - g.tileStart, 0));
}

const args = parse(Deno.args);
const batch = int(args, "batch", 4);
const kvHeads = int(args, "kv-heads", 2);
const tileSize = int(args, "tile", 64);
const grid = int(args, "grid", 13);
const file = args.get("out") ?? "schedule.svg";
const lensArg = args.get("lens") ?? "512,2048,130,1000";
let kvLens = lensArg.split(",").map(Number);
if (kvLens.length === 1 && batch > 1) kvLens = Array(batch).fill(kvLens[0]);
if (kvLens.length !== batch) {
  throw new Error(`--lens: expected ${batch} lengths (one per batch entry), got ${kvLens.length}`);
}
const split = args.has("split") ? int(args, "split", 1) : 0;

const schedule = split > 0
  ? splitSchedule({ batch, kvHeads, kvLens, tileSize, numSplits: split })
  : leanSchedule({ batch, kvHeads, kvLens, tileSize, grid });
await Deno.writeTextFile(file, renderSchedule(schedule));

// A worker's time is its tile count; the slowest worker bounds the wave.
const l = loads(schedule);
const flashMax = Math.max(...schedule.units.map((u) => u.tiles));
const mean = schedule.totalTiles / l.length;
console.log(
  `${schedule.kind === "lean" ? "lean" : `split×${split}`}: ${schedule.units.length} units, ` +
    `${schedule.totalTiles} tiles over ${l.length} workers, ${Math.min(...l)}–${
      Math.max(...l)
    } tiles each (max/mean ${(Math.max(...l) / mean).toFixed(2)}; ` +
    `flash's longest unit: ${flashMax}), ${schedule.cuts.length} cut units → wrote ${file}`,
);
