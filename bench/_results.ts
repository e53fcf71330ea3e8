/**
 * The shape of a benchmark results file (`bench/results/<gpu>-<date>.json`), shared by the
 * harness that writes it, the plot that reads it and the smoke test that checks it.
 *
 * @module
 */
import type { Algo, BenchDType, Case } from "./_sweep.ts";

/** One measured (or skipped, or absent) algorithm on one shape. */
export interface Row {
  algo: Algo;
  dtype: BenchDType;
  B: number;
  Hq: number;
  Hkv: number;
  D: number;
  /** Keys stored per (batch, kv head); for ragged rows the padded length. */
  N: number;
  /** Valid keys per batch entry, ragged rows only. */
  kvLens?: number[];
  /**
   * Median GPU time of one call, ms: from its first compute pass's begin timestamp to its last
   * pass's end (peers: as their harness reports it).
   */
  gpuMs: number | null;
  /** Median sum of the call's passes' own times, ms (counts no gaps; may double-count). */
  gpuSumMs?: number;
  /** Wall time per call in a pipelined loop with one readback at the end, ms. */
  wallMs: number | null;
  /** Bytes of K and V read (valid keys only) / gpuMs, GB/s (1e9 bytes). */
  effGBs: number | null;
  /** `effGBs` over the streaming-read ceiling measured at the same byte size. */
  fracCeiling?: number | null;
  /** The ceiling at this row's byte size, GB/s. */
  ceilingGBs?: number;
  /** Max |out − flash out| over the whole output, where flash ran. */
  maxAbsDiff?: number;
  /** Max |out − float64 reference| over the sampled output rows (the correctness check). */
  refDiff?: number;
  /** Tolerance the check used. */
  tol?: number;
  /** Workers of the schedule (lean: the grid; flash-decoding: units × splits). */
  workers?: number;
  /** Units whose keys were split across workers (merged afterwards). */
  cutUnits?: number;
  /** Compute passes per call. */
  passes?: number;
  /** Calls in the wall-time loop. */
  wallCalls?: number;
  /** Quantized rows: max |out − float64 over the unquantized inputs| on the checked rows. */
  quantErr?: number;
  /** Paged rows: tokens per page of the KV cache. */
  pageSize?: number;
  /** Bytes of K and V held: contiguous tensors (padded to N), or a cache's pages in use. */
  storedBytes?: number;
  /** The case did not run (why: a device limit, memory). */
  skipped?: string;
  /** The peer is not available here (why). */
  absent?: string;
  /** The row ran and failed (wrong result or an exception): loud on purpose. */
  error?: string;
  /** Anything else worth knowing (e.g. how a peer handled GQA). */
  note?: string;
}

/** A whole results file. */
export interface Results {
  /** Adapter description (or CPU model for `--cpu`). */
  device: string;
  /** ISO timestamp of the run. */
  date: string;
  /** `Deno.version.deno`. */
  deno: string;
  /** Best streaming-read bandwidth measured in the run, GB/s. */
  ceilingGBs: number;
  /** `"webgpu"` or `"cpu"`. */
  backend?: string;
  /** Device limits the skip rules used. */
  limits?: { maxBufferSize: number; maxStorageBufferBindingSize: number };
  /** Optional GPU features the backend got. */
  features?: { f16: boolean; subgroups: boolean; timestamps: boolean };
  /** Versions of the peers that ran. */
  versions?: Record<string, string>;
  /** Command-line flags. */
  args?: string[];
  /** How the inputs were made. */
  inputs?: string;
  /** Total run time, s. */
  elapsedS?: number;
  /** The rows. */
  rows: Row[];
}

/** The row fields that name the shape of a case. */
export function rowShape(c: Case): Pick<Row, "dtype" | "B" | "Hq" | "Hkv" | "D" | "N" | "kvLens"> {
  const s: Pick<Row, "dtype" | "B" | "Hq" | "Hkv" | "D" | "N" | "kvLens"> = {
    dtype: c.dtype,
    B: c.B,
    Hq: c.Hq,
    Hkv: c.Hkv,
    D: c.D,
    N: c.N,
  };
  if (c.kvLens) s.kvLens = [...c.kvLens];
  return s;
}

/** A key naming a row's configuration without N (one plotted line). */
export function configKey(r: Pick<Row, "dtype" | "B" | "Hq" | "Hkv" | "D">): string {
  return `B${r.B} Hq${r.Hq} Hkv${r.Hkv} D${r.D} ${r.dtype === "float16" ? "f16" : "f32"}`;
}

/** Checks the parts of a results file the plot and the report rely on; throws on the first. */
export function validateResults(x: unknown): Results {
  const fail = (m: string): never => {
    throw new Error(`results file: ${m}`);
  };
  if (typeof x !== "object" || x === null) fail("expected an object");
  const r = x as Record<string, unknown>;
  for (const k of ["device", "date", "deno"]) {
    if (typeof r[k] !== "string") fail(`"${k}" must be a string`);
  }
  if (typeof r.ceilingGBs !== "number") fail(`"ceilingGBs" must be a number`);
  if (!Array.isArray(r.rows)) fail(`"rows" must be an array`);
  (r.rows as unknown[]).forEach((row, i) => {
    const o = row as Record<string, unknown>;
    if (typeof o !== "object" || o === null) fail(`rows[${i}] must be an object`);
    for (const k of ["algo", "dtype"]) {
      if (typeof o[k] !== "string") fail(`rows[${i}].${k} must be a string`);
    }
    for (const k of ["B", "Hq", "Hkv", "D", "N"]) {
      if (typeof o[k] !== "number") fail(`rows[${i}].${k} must be a number`);
    }
    for (const k of ["gpuMs", "wallMs", "effGBs"]) {
      if (o[k] !== null && typeof o[k] !== "number") fail(`rows[${i}].${k} must be number|null`);
    }
  });
  return x as Results;
}

/** Largest |a − b|; Infinity when the lengths differ or a difference is NaN. */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Largest |x|. */
export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
