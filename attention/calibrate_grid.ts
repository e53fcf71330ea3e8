/**
 * `calibrateGrid`: picks the default lean `grid` of a backend by timing, for adapters the
 * built-in table of multiprocessor counts does not know. The result is cached per adapter
 * (by the backend's description) and used by every later `leanAttention` call that does not
 * pass `grid`.
 *
 * @module
 */
import type { Backend } from "../backends/backend.ts";
import { ArgumentError, show } from "../tensor/errors.ts";
import { readOptions } from "../tensor/options.ts";
import { randn } from "../tensor/creation.ts";
import { leanAttention } from "./lean.ts";
import { calibratedGrid, storeCalibratedGrid } from "./_grid_store.ts";

/** Options of {@link calibrateGrid}. */
export interface CalibrateOptions {
  /** Keys of the synthetic decode problem (default 8192). */
  keys?: number;
  /** KV heads (and query heads) of the synthetic problem (default 16). */
  heads?: number;
  /** Timed calls per candidate (default 10; the median is kept). */
  reps?: number;
  /** Grids to try (default the backend's parallelism × 1, 2, 4 and 8). */
  candidates?: readonly number[];
}

/** The outcome of a calibration. */
export interface Calibration {
  /** The grid chosen (fastest median). */
  grid: number;
  /** Median milliseconds per call of each candidate, in candidate order. */
  times: { grid: number; ms: number }[];
  /** `"timestamps"` (GPU timestamp queries) or `"wall"` (wall clock around reads). */
  timing: "timestamps" | "wall";
}

export { calibratedGrid };

function positive(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
    throw new ArgumentError(`calibrateGrid: ${name} must be a positive integer, got ${v}`);
  }
  return v;
}

/**
 * Times `leanAttention` (float16 K/V, D = 128, one query token) over candidate grids on
 * `backend`, caches the fastest for the adapter and returns every timing.
 *
 * @example
 * ```ts
 * import { calibrateGrid, cpu } from "../mod.ts";
 * const c = await calibrateGrid(cpu(), { keys: 256, heads: 2, reps: 2, candidates: [1, 2] });
 * console.log(c.grid, c.times.length); // e.g. 2 2
 * ```
 */
export async function calibrateGrid(
  backend: Backend,
  options: CalibrateOptions = {},
): Promise<Calibration> {
  const opts = readOptions<CalibrateOptions>("calibrateGrid", options, [
    "keys",
    "heads",
    "reps",
    "candidates",
  ]);
  if (backend === null || typeof backend !== "object" || typeof backend.attention !== "function") {
    throw new ArgumentError(`calibrateGrid: backend must be a Backend, got ${show(backend)}`);
  }
  const keys = positive("keys", opts.keys, 8192);
  const heads = positive("heads", opts.heads, 16);
  const reps = positive("reps", opts.reps, 10);
  const candidates = opts.candidates ?? [1, 2, 4, 8].map((f) => f * backend.parallelism);
  if (candidates.length === 0) throw new ArgumentError("calibrateGrid: no candidate grids");
  candidates.forEach((g, i) => positive(`candidates[${i}]`, g, 1));
  const dtype = "float16";
  const q = randn([1, heads, 1, 128], { seed: 1, dtype, backend });
  const k = randn([1, heads, keys, 128], { seed: 2, dtype, backend });
  const v = randn([1, heads, keys, 128], { seed: 3, dtype, backend });
  // Timestamps where the backend declares them (the profiling capability), else wall time.
  const stamps = backend.timestamps === true && backend.setProfiling !== undefined &&
    backend.readTimings !== undefined;
  const times: { grid: number; ms: number }[] = [];
  try {
    for (const grid of candidates) {
      const call = () => leanAttention(q, k, v, { grid, tileSize: 64 });
      for (let i = 0; i < 2; i++) await settle(call());
      const per: number[] = [];
      if (stamps) {
        backend.setProfiling!(true);
        try {
          await backend.readTimings!();
          for (let i = 0; i < reps; i++) {
            await settle(call());
            const t = await backend.readTimings!();
            const s0 = t[0]?.startNs, e1 = t[t.length - 1]?.endNs;
            per.push(
              s0 !== undefined && e1 !== undefined && e1 > s0
                ? (e1 - s0) / 1e6
                : t.reduce((a, x) => a + x.ms, 0),
            );
          }
        } finally {
          backend.setProfiling!(false);
        }
      } else {
        for (let i = 0; i < reps; i++) {
          const t0 = performance.now();
          await settle(call());
          per.push(performance.now() - t0);
        }
      }
      per.sort((a, b) => a - b);
      times.push({ grid, ms: per[per.length >> 1] });
    }
  } finally {
    for (const t of [q, k, v]) t.dispose();
  }
  const best = times.reduce((a, b) => (b.ms < a.ms ? b : a));
  storeCalibratedGrid(backend, best.grid);
  return { grid: best.grid, times, timing: stamps ? "timestamps" : "wall" };
}

/** Waits for a result (one element read) and frees it. */
async function settle(t: { data(): Promise<Float32Array>; dispose(): void }): Promise<void> {
  try {
    await t.data();
  } finally {
    t.dispose();
  }
}
