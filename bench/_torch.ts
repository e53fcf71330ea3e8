/**
 * Runs the PyTorch peer (`peers/torch_sdpa.py`) as a subprocess: cases as JSON on stdin, one
 * JSON object back on stdout. Absent (with the reason) when python3, torch or CUDA is missing.
 *
 * @module
 */
import type { Case } from "./_sweep.ts";

/** A case as the Python script reads it. */
export type TorchCase = Pick<Case, "dtype" | "D" | "B" | "Hq" | "Hkv" | "N" | "kvLens">;

/** One row the script returns. */
export interface TorchRow {
  /** Index into the cases sent. */
  case: number;
  algo: string;
  gpuMs: number | null;
  wallMs: number | null;
  maxAbsDiff?: number;
  gqa?: string;
  note?: string;
  absent?: string;
  error?: string;
}

/** What the peer gave. */
export interface TorchResult {
  version?: string;
  device?: string;
  /** Set when no row could run (no python3, torch or CUDA). */
  absent?: string;
  /** Set when the script stopped early (rows after the last one it sent are missing). */
  cutShort?: string;
  rows: TorchRow[];
}

/** Path of the Python script. */
export const TORCH_SCRIPT = new URL("./peers/torch_sdpa.py", import.meta.url).pathname;

/** Runs every case for the torch algorithms asked for, stopping the script after `budgetS`. */
export async function runTorchPeer(
  cases: readonly TorchCase[],
  algos: readonly string[],
  opts: { reps: number; warmup: number; python?: string; budgetS?: number; seed?: number },
): Promise<TorchResult> {
  const python = opts.python ?? Deno.env.get("LEANATTN_PYTHON") ?? "python3";
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(python, {
      args: [TORCH_SCRIPT],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
      env: { PYTHONUNBUFFERED: "1" },
    }).spawn();
  } catch (e) {
    return { absent: `cannot start ${python}: ${e instanceof Error ? e.message : e}`, rows: [] };
  }
  let timedOut = false;
  const timer = opts.budgetS === undefined || !Number.isFinite(opts.budgetS)
    ? undefined
    : setTimeout(() => {
      timedOut = true;
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, opts.budgetS * 1000);
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify({
    cases,
    algos,
    reps: opts.reps,
    warmup: opts.warmup,
    seed: opts.seed ?? 1,
  })));
  await w.close().catch(() => {});
  const out = await child.output();
  clearTimeout(timer);
  return parseTorchOutput(new TextDecoder().decode(out.stdout), out.code, timedOut, opts.budgetS);
}

/** Parses the script's JSON lines (tolerating a run cut short). */
export function parseTorchOutput(
  stdout: string,
  code: number,
  timedOut = false,
  budgetS?: number,
): TorchResult {
  const res: TorchResult = { rows: [] };
  let done = false;
  let lastText = "";
  for (const line of stdout.split("\n")) {
    const s = line.trim();
    if (!s) continue;
    lastText = s;
    let j;
    try {
      j = JSON.parse(s);
    } catch {
      continue;
    }
    if (j.absent) return { absent: j.absent, version: j.torch, rows: [] };
    if (j.torch) res.version = j.torch;
    if (j.device) res.device = j.device;
    if (j.row) res.rows.push(j.row);
    if (j.done) done = true;
  }
  if (!done) {
    const why = timedOut
      ? `torch_sdpa.py stopped after its ${budgetS} s budget`
      : `torch_sdpa.py exited ${code} before finishing${
        lastText ? `: ${lastText.slice(0, 200)}` : ""
      }`;
    if (res.version === undefined) res.absent = why;
    else res.cutShort = why;
  }
  return res;
}
