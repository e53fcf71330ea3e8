/**
 * Runs a test script in a process of its own with `gc()` exposed (`--v8-flags=--expose-gc`) and
 * asserts its last stdout line, JSON `{ ok, error? }`, says ok: for checks that must force
 * collection without other tests' dropped objects being finalised in the middle.
 */
import { ok as assert } from "node:assert/strict";

export async function assertGcScript(script: URL, args: string[] = []): Promise<void> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", script.pathname, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout).trim();
  const err = new TextDecoder().decode(r.stderr);
  assert(r.code === 0, `exit ${r.code}: ${out}\n${err}`);
  const result = JSON.parse(out.split("\n").at(-1)!) as { ok: boolean; error?: string };
  assert(result.ok, result.error);
}
