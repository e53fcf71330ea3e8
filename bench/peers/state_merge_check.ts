/**
 * Cross-framework attention states: PyTorch computes attention over the first part of a KV
 * cache and saves its state as `.safetensors`; leanattn computes lean attention over the rest
 * and saves its own; each side loads the other's file and merges, and both merges are compared
 * with attention over the whole cache (leanattn's side also with the float64 reference).
 *
 *     deno run -A bench/peers/state_merge_check.ts [--cpu] [--n 8192] [--engine torch|numpy]
 *
 * On the GPU host (after `source .gpu/setup.sh`) it runs on WebGPU and PyTorch on CUDA;
 * `--engine numpy` does the Python half with numpy (a machine without torch). The Python
 * half is bench/peers/state_merge_check.py (`LEANATTN_PYTHON` picks the interpreter). Prints
 * a JSON summary and exits 1 when an error exceeds 1e-4 of max|ref| (float32 throughout).
 */
import * as la from "../../mod.ts";
import { maxAbs, maxAbsDiff, referenceAttention } from "../../testing/reference.ts";

function flag(name: string, fallback: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : fallback;
}
const backend = Deno.args.includes("--cpu") ? la.cpu() : await la.defaultBackend();
const engine = flag("engine", "torch");
const [B, Hq, Hkv, D] = [2, 8, 2, 128];
const N = Number(flag("n", "8192"));
const split = Math.floor(N * 0.4) + 3; // not a multiple of any tile size

const q = la.randn([B, Hq, 1, D], { seed: 11, backend });
const k = la.randn([B, Hkv, N, D], { seed: 12, backend });
const v = la.randn([B, Hkv, N, D], { seed: 13, backend });
const [qv, kv, vv] = await Promise.all([q.data(), k.data(), v.data()]);

/** Keys [from, to) of every (batch, kv-head) as a tensor [B, Hkv, to - from, D]. */
function keysBetween(x: Float32Array, from: number, to: number): la.Tensor {
  const part = new Float32Array(B * Hkv * (to - from) * D);
  for (let bh = 0; bh < B * Hkv; bh++) {
    part.set(x.subarray((bh * N + from) * D, (bh * N + to) * D), bh * (to - from) * D);
  }
  return la.tensor(part, { shape: [B, Hkv, to - from, D], backend });
}

const dir = await Deno.makeTempDir({ prefix: "leanattn-state-merge-" });
const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
await Deno.writeTextFile(`${dir}/spec.json`, JSON.stringify({ B, Hq, Hkv, N, D, split }));
await Deno.writeFile(`${dir}/q.f32`, bytes(qv));
await Deno.writeFile(`${dir}/k.f32`, bytes(kv));
await Deno.writeFile(`${dir}/v.f32`, bytes(vv));

const [k2, v2] = [keysBetween(kv, split, N), keysBetween(vv, split, N)];
const leanPart = la.leanAttention(q, k2, v2, { returnLse: true });
await la.saveAttentionState(`${dir}/lean_state.safetensors`, leanPart);

const script = new URL("./state_merge_check.py", import.meta.url).pathname;
const python = Deno.env.get("LEANATTN_PYTHON") ?? "python3";
const r = await new Deno.Command(python, {
  args: [script, dir, "--engine", engine],
  stdin: "null",
  stdout: "piped",
  stderr: "inherit",
}).output();
const pyOut = new TextDecoder().decode(r.stdout).trim();
if (r.code !== 0) {
  console.error(`${python} ${script} failed (exit ${r.code}): ${pyOut}`);
  Deno.exit(1);
}
const py = JSON.parse(pyOut.split("\n").at(-1)!);

const torchPart = await la.loadAttentionState(`${dir}/torch_state.safetensors`, { backend });
const merged = la.mergeAttentionStates([torchPart, leanPart]);
const whole = la.leanAttention(q, k, v);
const ref = referenceAttention({ q: qv, k: kv, v: vv, B, Hq, Hkv, Sq: 1, N, D });
const [mergedOut, wholeOut] = await Promise.all([merged.out.data(), whole.data()]);
const refMax = maxAbs(ref.out);
const summary = {
  backend: `${backend.name} — ${backend.description}`,
  shape: { B, Hq, Hkv, N, D, split },
  python: py,
  leanattnMergeVsReference: maxAbsDiff(mergedOut, ref.out),
  leanattnMergeVsWholeLean: maxAbsDiff(mergedOut, wholeOut),
  wholeLeanVsReference: maxAbsDiff(wholeOut, ref.out),
  maxAbsRef: refMax,
};
console.log(JSON.stringify(summary, null, 2));
await Deno.remove(dir, { recursive: true });
const tol = 1e-4 * refMax;
const ok = summary.leanattnMergeVsReference <= tol && py.max_abs_err <= tol;
console.log(ok ? `ok: both merges within ${tol.toExponential(2)}` : `FAILED: tolerance ${tol}`);
Deno.exit(ok ? 0 : 1);
