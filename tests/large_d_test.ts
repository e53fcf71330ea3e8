/**
 * Large head dimensions (#19 item 7). The WebGPU backend takes D up to `maxHeadDim` (one key
 * of K and V as f32 beside the kernels' other workgroup arrays: maxComputeWorkgroupStorageSize
 * / 16) and refuses more
 * with a {@link LimitError} at planning, before allocating; above D = 256 the generic kernel
 * loops over D instead of unrolling (the unrolled D = 512 kernel took 43 s to compile on
 * lavapipe, D = 4096 never finished), here checked for values against the float64 reference
 * at a D on the loop path. The CPU takes any D.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { Backend } from "../backends/backend.ts";
import type { WebGpuBackend } from "../backends/webgpu/webgpu_backend.ts";
import { maxHeadDim } from "../backends/webgpu/attention/generic_kernel.ts";
import { flashAttention } from "../attention/flash.ts";
import { leanAttention } from "../attention/lean.ts";
import { tensor } from "../tensor/creation.ts";
import { LimitError } from "../tensor/errors.ts";
import { normals } from "../tensor/random.ts";
import { maxAbs, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { describeBackends } from "./_backends.ts";
import { expectError } from "./_assert.ts";

function inputs(backend: Backend, B: number, H: number, N: number, D: number) {
  const q = normals(B * H * D, D);
  const k = normals(B * H * N * D, D + 1);
  const v = normals(B * H * N * D, D + 2);
  const t = (x: Float32Array, n: number) => tensor(x, { shape: [B, H, n, D], backend });
  return { q, k, v, qt: t(q, 1), kt: t(k, N), vt: t(v, N) };
}

describeBackends("attention at D = 300 (the generic kernel's loop path)", async (backend) => {
  const [B, H, N, D] = [2, 2, 40, 300];
  const kvLens = [40, 17];
  const { q, k, v, qt, kt, vt } = inputs(backend, B, H, N, D);
  const ref = referenceAttention({ q, k, v, B, Hq: H, Hkv: H, Sq: 1, N, D, kvLens });
  const gpu = backend.name === "webgpu" ? backend as WebGpuBackend : null;
  const saved = gpu?.attentionTuning;
  // float32 dot products of 300 terms, then ≤ 40 keys: a few ulps of the scale of v.
  const tol = 2 ** -24 * 64 * Math.sqrt(D * N) * maxAbs(v);
  try {
    for (const kernel of gpu ? ["generic", undefined] : [undefined]) {
      if (gpu) gpu.attentionTuning = kernel ? { kernel: "generic" } : {};
      for (
        const out of [
          flashAttention(qt, kt, vt, { kvLens }),
          flashAttention(qt, kt, vt, { kvLens, numSplits: 3 }),
          leanAttention(qt, kt, vt, { kvLens, grid: 5 }),
        ]
      ) {
        const err = maxAbsDiff(await out.data(), ref.out);
        out.dispose();
        assert(err <= tol, `${kernel ?? "default"} kernel: error ${err} over ${tol}`);
      }
    }
  } finally {
    if (gpu && saved) gpu.attentionTuning = saved;
  }
  for (const t of [qt, kt, vt]) t.dispose();
});

describeBackends("a head dimension over the WebGPU maximum is a LimitError", (backend) => {
  if (backend.name !== "webgpu") return; // the CPU has no maximum but the tensor size
  const D = maxHeadDim((backend as WebGpuBackend).ctx) + 1;
  const { qt, kt, vt } = inputs(backend, 1, 1, 2, D);
  const before = backend.memory();
  for (const f of [() => flashAttention(qt, kt, vt), () => leanAttention(qt, kt, vt)]) {
    expectError(LimitError, f, ["head dimension", `${D}`, "maxComputeWorkgroupStorageSize"], "D");
  }
  assertEquals(backend.memory().liveCount, before.liveCount);
  assertEquals(backend.memory().liveBytes, before.liveBytes);
  for (const t of [qt, kt, vt]) t.dispose();
});
