/**
 * Clear failures when WebGPU cannot start: Deno's permission errors and a missing adapter
 * become BackendUnavailableError naming the fix (the --allow-env flag, DENO_WEBGPU_BACKEND),
 * and defaultBackend() falling back to the CPU says why, once (console.warn), and keeps the
 * reason in fallbackReason(). Each case runs in a subprocess with its own environment and
 * permissions (DENO_WEBGPU_BACKEND=metal: no such backend on Linux, so no adapter).
 */
import { ok as assert } from "node:assert/strict";

const SCRIPT = `
import * as la from ${JSON.stringify(new URL("../mod.ts", import.meta.url).href)};
let error = null;
try { (await la.webgpu()).destroy(); } catch (e) { error = { name: e.name, message: e.message }; }
const b = await la.defaultBackend();
await la.defaultBackend();
console.log(JSON.stringify({ error, backend: b.name, reason: la.fallbackReason() ?? null }));
`;

interface Outcome {
  error: { name: string; message: string } | null;
  backend: string;
  reason: string | null;
  stderr: string;
}

async function run(permissions: string[], env: Record<string, string>): Promise<Outcome> {
  const dir = await Deno.makeTempDir({ prefix: "leanattn-fail-" });
  try {
    await Deno.writeTextFile(`${dir}/s.ts`, SCRIPT);
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", ...permissions, `${dir}/s.ts`],
      env: { NO_COLOR: "1", RUST_BACKTRACE: "0", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(r.stdout);
    const stderr = new TextDecoder().decode(r.stderr);
    assert(r.code === 0, `subprocess failed:\n${stdout}\n${stderr}`);
    return { ...JSON.parse(stdout.trim().split("\n").at(-1)!), stderr };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const XDG = { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" };

Deno.test("without --allow-env: BackendUnavailableError naming the flag, not NotCapable", async () => {
  const o = await run(["--allow-read"], { ...XDG, DENO_WEBGPU_BACKEND: "metal" });
  assert(o.error?.name === "BackendUnavailableError", JSON.stringify(o.error));
  assert(o.error.message.includes("--allow-env=DENO_WEBGPU_BACKEND"), o.error.message);
  assert(o.backend === "cpu");
  assert(o.reason?.startsWith("BackendUnavailableError: no WebGPU adapter"), String(o.reason));
});

Deno.test("a DENO_WEBGPU_BACKEND without an adapter is named; the fallback warns once", async () => {
  const o = await run(["-A"], { ...XDG, DENO_WEBGPU_BACKEND: "metal" });
  assert(o.error?.name === "BackendUnavailableError", JSON.stringify(o.error));
  assert(o.error.message.includes('DENO_WEBGPU_BACKEND="metal"'), o.error.message);
  assert(o.error.message.includes("unset it"), o.error.message);
  assert(o.backend === "cpu" && o.reason?.includes('"metal"'), String(o.reason));
  const warnings = o.stderr.split("\n").filter((l) =>
    l.includes("defaultBackend() runs on the CPU")
  );
  assert(warnings.length === 1, `expected one warning, got:\n${o.stderr}`);
});

Deno.test("with an adapter there is no fallback reason and no warning", async () => {
  if (Deno.env.get("CI") !== "true") {
    const probe = await navigator.gpu?.requestAdapter();
    if (!probe) return; // no adapter on this machine: nothing to check
  }
  const o = await run(["-A"], { ...XDG });
  assert(o.error === null && o.backend === "webgpu" && o.reason === null, JSON.stringify(o));
  assert(!o.stderr.includes("runs on the CPU"), o.stderr);
});
