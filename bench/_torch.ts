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
  rows: TorchRow[];
}

/** Path of the Python script. */
export const TORCH_SCRIPT = new URL("./peers/torch_sdpa.py", import.meta.url).pathname;

/** Runs every case for the torch algorithms asked for. */
export async function runTorchPeer(
  cases: readonly TorchCase[],
  algos: readonly string[],
  opts: { reps: number; warmup: number; python?: string },
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
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify({ cases, algos, ...opts })));
  await w.close();
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout).trim();
  const last = text.split("\n").at(-1) ?? "";
  try {
    const j = JSON.parse(last);
    if (j.absent) return { absent: j.absent, version: j.torch, rows: [] };
    return { version: j.torch, device: j.device, rows: j.rows ?? [] };
  } catch {
    return {
      absent: `torch_sdpa.py exited ${out.code} without JSON${
        last ? `: ${last.slice(0, 200)}` : ""
      }`,
      rows: [],
    };
  }
}
