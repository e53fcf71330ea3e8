/**
 * The long-context case of the device-limits requirement, for a real GPU (not part of
 * `deno test`): K and V `[1, 32, N, 128]` float16 with N = 524,288 are 4 GiB each — more
 * than one binding (2 GiB on an H200) and than one buffer (≈4 GiB). They are stored in
 * parts and flash, flash-decoding and lean merge the parts' states; every output row and
 * LSE is checked against the float64 reference, for the full length and a ragged one.
 *
 *     deno run -A tests/gpu/limits_long_context.ts [N]
 *
 * On an H200 (2026-11-25): 3 parts of [0, 174848) [174848, 349696) [349696, 524288); all
 * three agree with the reference (out error 3.8e-6 against a tolerance of 9e-6 to 1.3e-5,
 * lse error ≤ 1.4e-6); wall time per call (6 calls, one readback) at N = 524288: flash
 * 25.3 ms, flash-decoding 9.6 ms, lean 8.5 ms; 69 s in all,
 * most of it making the 16 GiB of host data and the reference.
 *
 * With `oom` it fills the GPU with 2 GiB buffers instead. On an H200: after 136 GiB,
 * `LimitError: alloc 536870912 float32: out of GPU memory: not enough memory left`, no
 * uncaptured error, and the device computes correctly after the buffers are released.
 *
 * @module
 */
import { webgpu } from "../../backends/webgpu/webgpu_backend.ts";
import { flashAttention } from "../../attention/flash.ts";
import { leanAttention } from "../../attention/lean.ts";
import { Tensor } from "../../tensor/tensor.ts";
import { normals } from "../../tensor/random.ts";
import { roundToF16 } from "../../tensor/dtype.ts";
import { maxAbs, maxAbsDiff, referenceAttention } from "../../testing/reference.ts";

if (Deno.args[0] === "oom") await outOfMemory();

/**
 * `deno run -A tests/gpu/limits_long_context.ts oom`: allocates 2 GiB buffers until the device
 * runs out of memory; the failure must arrive as a LimitError (from the error scope around
 * buffer creation), never as an uncaptured error, and the device must work afterwards.
 */
async function outOfMemory(): Promise<never> {
  const { LimitError } = await import("../../tensor/errors.ts");
  const { exp } = await import("../../ops/unary.ts");
  const { tensor } = await import("../../tensor/creation.ts");
  const b = await webgpu();
  let uncaptured = 0;
  b.device.addEventListener("uncapturederror", () => uncaptured++);
  const ids = [];
  let caught: unknown = null;
  for (let i = 0; i < 400 && !caught; i++) {
    try {
      ids.push(b.ctx.alloc(2 ** 29, "float32"));
      if (i % 4 === 3) await b.ctx.device.queue.onSubmittedWorkDone();
    } catch (e) {
      caught = e;
    }
  }
  const gib = (ids.length * 2).toFixed(0);
  console.log(`after ${gib} GiB: ${caught}; uncaptured errors: ${uncaptured}`);
  for (const id of ids) b.release(id);
  b.flush();
  const t = tensor([0, 1], { backend: b });
  const after = await exp(t).data();
  const ok = caught instanceof LimitError && uncaptured === 0 && Math.abs(after[1] - Math.E) < 1e-6;
  console.log(`the device works afterwards: ${after}; ${ok ? "OK" : "FAIL"}`);
  Deno.exit(ok ? 0 : 1);
}

const N = Number(Deno.args[0] ?? 524288);
const [B, H, Hq, D] = [1, 32, 32, 128];
const t0 = performance.now();
const lap = (s: string) => console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s  ${s}`);
const b = await webgpu();
const lim = b.limits;
console.log(
  `${b.description}: binding ${lim.maxStorageBufferBindingSize}, buffer ${lim.maxBufferSize}`,
);

/** A prime period: a part placed at the wrong offset cannot read the same values. */
const P = 50_000_017;
function filled(seed: number): Float32Array {
  const base = roundToF16(normals(P, seed));
  const a = new Float32Array(B * H * N * D);
  for (let o = 0; o < a.length; o += P) a.set(base.subarray(0, Math.min(P, a.length - o)), o);
  return a;
}
const shape = [B, H, N, D];
const kv = filled(2);
const vv = filled(3);
const qv = roundToF16(normals(B * Hq * D, 1));
lap("host data");
const q = new Tensor(b, b.upload(qv, "float16", [B, Hq, 1, D]), [B, Hq, 1, D], "float16");
const k = new Tensor(b, b.upload(kv, "float16", shape), shape, "float16");
const v = new Tensor(b, b.upload(vv, "float16", shape), shape, "float16");
const parts = b.storageParts({ id: k.id, shape, dtype: "float16" }) ?? [];
console.log("parts", parts.map((p) => `[${p.n0}, ${p.n1})`).join(" "), b.memory());
lap("uploaded");
let failed = false;
for (const kvLens of [[N], [Math.floor(N * 0.55)]]) {
  const ref = referenceAttention({ q: qv, k: kv, v: vv, B, Hq, Hkv: H, Sq: 1, N, D, kvLens });
  lap(`reference, kvLens ${kvLens}`);
  // float32 sums growing slowly with N; the float16 output's rounding.
  const grow = Math.max(1, Math.log2(N) / 4);
  const tolOut = 1e-5 * maxAbs(ref.out) * grow + 2 * 2 ** -11 * maxAbs(ref.out);
  const tolLse = 1e-5 * Math.max(1, maxAbs(ref.lse)) * grow;
  const runs = [
    ["flash", () => flashAttention(q, k, v, { kvLens, returnLse: true })],
    [
      "flash-decoding",
      () => flashAttention(q, k, v, { kvLens, numSplits: "auto", returnLse: true }),
    ],
    ["lean", () => leanAttention(q, k, v, { kvLens, returnLse: true })],
  ] as const;
  for (const [name, f] of runs) {
    const r = f();
    const out = await r.out.data();
    const lse = await r.lse.data();
    const t1 = performance.now();
    for (let i = 0; i < 5; i++) {
      const s = f();
      s.out.dispose();
      s.lse.dispose();
    }
    await f().out.data();
    const ms = (performance.now() - t1) / 6;
    const eo = maxAbsDiff(out, ref.out);
    const el = maxAbsDiff(lse, ref.lse);
    const ok = eo <= tolOut && el <= tolLse;
    failed ||= !ok;
    console.log(
      `${name}, kvLens ${kvLens}: out error ${eo.toExponential(2)} (tol ${
        tolOut.toExponential(2)
      }), ` +
        `lse error ${el.toExponential(2)} (tol ${tolLse.toExponential(2)}) ${
          ok ? "OK" : "FAIL"
        }; ` +
        `${ms.toFixed(1)} ms a call (wall)`,
    );
  }
}
const back = await k.data();
let same = back.length === kv.length;
for (let i = 0; same && i < back.length; i += 4099) same = back[i] === kv[i];
console.log("round trip (every 4099th value):", same ? "OK" : "FAIL");
lap("done");
if (failed || !same) Deno.exit(1);
