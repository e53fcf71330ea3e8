/**
 * The numeric regression gate: `deno task regress`.
 *
 * Runs the fixed, seeded cases of `cases.ts` with every algorithm (naive, flash,
 * flash-decoding, lean) on every backend present, measures each result's error against the
 * float64 reference (relative to `max |ref|`) and compares it with the committed baseline
 * (`baseline.json` next to this file). It fails (exit 1, with the differences printed) when
 *
 * - an error grew by more than 2× and beyond the dtype's floor (so noise far below rounding
 *   never fails),
 * - a result has a NaN or ∞ the reference does not have (error NaN),
 * - a baseline row disappeared (its case was removed or renamed) or a new case has no row,
 * - a backend with rows is absent under `CI=true` (elsewhere its rows are skipped).
 *
 * Flags: `--update` rewrites the baseline from this run (keeping rows of absent backends) and
 * prints what changed; `--baseline <file>` uses another baseline file; `--backend <name>` runs
 * one backend only (the others' rows are skipped); `--json <file>` also writes this run's
 * errors.
 *
 * @module
 */
import { progress } from "../../testing/progress.ts";
import type { Backend } from "../../backends/backend.ts";
import { cpu } from "../../backends/cpu/cpu_backend.ts";
import { ALGOS, caseData, type CaseErrors, CASES, runCase } from "./cases.ts";

/** Errors may grow by this factor before the gate fails. */
const GROWTH = 2;
/**
 * Below these relative errors nothing fails (f32 and f16 unit roundoff are 6e-8 and 4.9e-4);
 * the output of a float16 case uses the float16 floor, every LSE the float32 one.
 */
const FLOOR: Record<string, number> = { float32: 1e-7, float16: 1e-4 };

/** The committed baseline file. */
export interface Baseline {
  note: string;
  growth: number;
  floors: Record<string, number>;
  /** The device each GPU backend's rows were measured on (`backend.description`). */
  devices?: Record<string, string>;
  /** `backend/case/algo` → errors. */
  rows: Record<string, { dtype: string; out: number; lse: number }>;
}

interface Args {
  update: boolean;
  baseline: string;
  backend: string | null;
  json: string | null;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    update: false,
    baseline: new URL("./baseline.json", import.meta.url).pathname,
    backend: null,
    json: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--update") args.update = true;
    else if (a === "--baseline") args.baseline = value();
    else if (a === "--backend") args.backend = value();
    else if (a === "--json") args.json = value();
    else if (a === "--help" || a === "-h") {
      console.log(
        "deno task regress [--update] [--baseline FILE] [--backend cpu|webgpu] [--json FILE]",
      );
      Deno.exit(0);
    } else throw new Error(`unknown argument ${a} (try --help)`);
  }
  return args;
}

async function loadBackends(only: string | null): Promise<{ list: Backend[]; why: string[] }> {
  const list: Backend[] = [];
  const why: string[] = [];
  if (only === null || only === "cpu") list.push(cpu());
  if (only === null || only === "webgpu") {
    try {
      const { webgpu } = await import("../../backends/webgpu/webgpu_backend.ts");
      list.push(await webgpu());
    } catch (e) {
      why.push(`webgpu unavailable: ${e instanceof Error ? e.message : e}`);
    }
  }
  return { list, why };
}

async function readBaseline(path: string): Promise<Baseline | null> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as Baseline;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Three significant digits: stable diffs, and far finer than the 2× rule. */
function sig(x: number): number {
  return Number.isFinite(x) && x !== 0 ? Number(x.toPrecision(3)) : x;
}

function fmtErr(x: number | undefined): string {
  return x === undefined ? "—" : Number.isNaN(x) ? "NaN" : x.toExponential(2);
}

/** Whether `now` is a regression against `base`; the LSE is float32 whatever the dtype. */
function regressed(now: number, base: number, field: "out" | "lse", dtype: string): boolean {
  if (Number.isNaN(now)) return true;
  const floor = FLOOR[field === "lse" ? "float32" : dtype] ?? 0;
  return now > Math.max(GROWTH * base, floor);
}

/** The errors of one run, by `backend/case/algo`. */
export type RunErrors = Map<string, CaseErrors & { dtype: string }>;

/** What {@link compare} decided. */
export interface Comparison {
  /** One printed line per row (in update mode only rows that change). */
  lines: string[];
  /** Why the gate fails; empty when it passes. */
  failures: string[];
  /** Rows of absent backends not held against the run. */
  skipped: number;
  /** Every key of the baseline and the run, sorted. */
  keys: string[];
}

/**
 * The gate's verdict on a run against baseline rows: `present` names the backends that ran,
 * `only` the one chosen with `--backend` (the others are skipped even under CI).
 */
export function compare(
  old: Baseline["rows"],
  now: RunErrors,
  present: ReadonlySet<string>,
  opts: { ci: boolean; update: boolean; only: string | null },
): Comparison {
  const keys = [...new Set([...Object.keys(old), ...now.keys()])].sort();
  const failures: string[] = [];
  const lines: string[] = [];
  let skipped = 0;
  for (const key of keys) {
    const b = old[key];
    const n = now.get(key);
    const backendName = key.split("/")[0];
    let status: string;
    if (n && b) {
      const bad = (["out", "lse"] as const).filter((f) => regressed(n[f], b[f], f, n.dtype));
      const better = (["out", "lse"] as const).some((f) => n[f] < b[f] / GROWTH);
      status = bad.length ? `FAIL (${bad.join(", ")} grew)` : better ? "ok (improved)" : "ok";
      if (bad.length) failures.push(`${key}: ${bad.join(", ")} error grew or is NaN`);
    } else if (n) {
      const nan = Number.isNaN(n.out) || Number.isNaN(n.lse);
      status = nan ? "FAIL (NaN)" : "FAIL (new: not in baseline)";
      if (nan) failures.push(`${key}: NaN`);
      else if (!opts.update) failures.push(`${key}: new case, not in the baseline (run --update)`);
    } else if (!present.has(backendName)) {
      const chosenAway = opts.only !== null && opts.only !== backendName;
      if (opts.ci && !chosenAway) {
        status = "FAIL (backend missing under CI=true)";
        failures.push(`${key}: backend ${backendName} missing under CI=true`);
      } else {
        status = "skipped (backend absent)";
        skipped++;
      }
    } else {
      status = "FAIL (gone: case no longer runs)";
      failures.push(`${key}: in the baseline but no longer runs`);
    }
    if (opts.update && !status.startsWith("skipped")) {
      // Print the diff only: rows whose stored numbers change.
      if (b && n && sig(n.out) === b.out && sig(n.lse) === b.lse) continue;
      status = b && n ? "changed" : n ? "added" : "removed";
    }
    lines.push(
      `${key.padEnd(44)} out ${fmtErr(n?.out).padStart(8)} (was ${fmtErr(b?.out).padStart(8)})` +
        `  lse ${fmtErr(n?.lse).padStart(8)} (was ${fmtErr(b?.lse).padStart(8)})  ${status}`,
    );
  }
  return { lines, failures, skipped, keys };
}

async function main(): Promise<number> {
  const args = parseArgs(Deno.args);
  const ci = Deno.env.get("CI") === "true";
  const started = performance.now();
  const { list: backends, why } = await loadBackends(args.backend);
  for (const w of why) console.warn(w);

  // Run.
  const now: RunErrors = new Map();
  const bar = progress("regress", backends.length * CASES.length);
  let step = 0;
  for (const backend of backends) {
    const t0 = performance.now();
    for (const c of CASES) {
      bar.update(step++, `${backend.name} ${c.name}`);
      const data = caseData(c);
      const errs = await runCase(backend, c, data);
      for (const [algo, e] of errs) {
        now.set(`${backend.name}/${c.name}/${algo}`, { ...e, dtype: c.dtype });
      }
    }
    bar.clear();
    console.log(
      `${backend.name} (${backend.description}): ${CASES.length * ALGOS.length} runs in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
    );
    backend.destroy?.();
  }
  bar.finish();
  const present = new Set(backends.map((b) => b.name));
  // The CPU computes in JS doubles: the same numbers on every machine, whatever its cores.
  const devices = Object.fromEntries(
    backends.filter((b) => b.name !== "cpu").map((b) => [b.name, b.description]),
  );

  const baseline = await readBaseline(args.baseline);
  const old = baseline?.rows ?? {};
  for (const [name, now] of Object.entries(devices)) {
    const then = baseline?.devices?.[name];
    if (then && then !== now && !args.update) {
      console.warn(
        `note: the ${name} rows were measured on "${then}", this run is on "${now}"; ` +
          `other hardware rounds differently — record its own baseline (--update --baseline FILE)`,
      );
    }
  }
  const { lines, failures, skipped, keys } = compare(old, now, present, {
    ci,
    update: args.update,
    only: args.backend,
  });
  console.log(lines.join("\n"));
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (args.json) {
    const run = Object.fromEntries([...now].map(([k, e]) => [k, e]));
    await Deno.writeTextFile(args.json, JSON.stringify(run, null, 2) + "\n");
  }

  if (args.update) {
    const nanRows = [...now].filter(([, e]) => Number.isNaN(e.out) || Number.isNaN(e.lse));
    if (nanRows.length) {
      console.error(`refusing to write a baseline with NaN errors: ${nanRows.map(([k]) => k)}`);
      return 1;
    }
    const rows: Baseline["rows"] = {};
    for (const key of keys) {
      const n = now.get(key);
      if (n) rows[key] = { dtype: n.dtype, out: sig(n.out), lse: sig(n.lse) };
      else if (!present.has(key.split("/")[0]) && old[key]) rows[key] = old[key];
    }
    const next: Baseline = {
      note: "Written by `deno task regress --update`: max error against the float64 " +
        "reference relative to max|ref| (out), and over finite LSEs relative to max(1, max|ref|).",
      growth: GROWTH,
      floors: FLOOR,
      devices: { ...baseline?.devices, ...devices },
      rows,
    };
    await Deno.writeTextFile(args.baseline, JSON.stringify(next, null, 2) + "\n");
    console.log(
      `baseline written: ${args.baseline} (${Object.keys(rows).length} rows, ${seconds} s)`,
    );
    return 0;
  }
  if (!baseline) {
    console.error(`no baseline at ${args.baseline}: run with --update to create it`);
    return 1;
  }
  if (failures.length) {
    console.error(`\nregress: ${failures.length} failure(s):\n  ${failures.join("\n  ")}`);
    return 1;
  }
  console.log(
    `\nregress: ok, ${now.size} runs within ${GROWTH}× of the baseline` +
      `${skipped ? `, ${skipped} rows skipped (backend absent)` : ""} (${seconds} s)`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main());
