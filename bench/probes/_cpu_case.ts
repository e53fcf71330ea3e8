// Shared by the CPU probes: a float32 decode case on the CPU backend (seeded q, K, V and lean's
// plan over them) and ONNX Runtime native's call on it.
import { loadOrtCpu } from "../peers/ort_cpu.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import { cpu } from "../../backends/cpu/cpu_backend.ts";
import { randn } from "../../tensor/creation.ts";
import { leanAttentionSchedule } from "../../attention/lean.ts";
import { plainRun } from "../../schedule/attention_plan.ts";

/** q `[B, Hq, 1, 128]`, K and V `[B, Hkv, N, 128]`, and lean's plan (its default grid). */
export function decodeCase(
  B: number,
  Hq: number,
  Hkv: number,
  N: number,
  opts: { grid?: number; tileSize?: number } = {},
) {
  const D = 128;
  const backend = cpu();
  const q = randn([B, Hq, 1, D], { seed: 3, backend });
  const k = randn([B, Hkv, N, D], { seed: 4, backend });
  const v = randn([B, Hkv, N, D], { seed: 5, backend });
  const schedule = leanAttentionSchedule(q, k, v, opts);
  const params = plainRun({
    algo: "lean",
    scale: 1 / Math.sqrt(D),
    causal: false,
    kvLens: new Int32Array(B).fill(N),
    schedule,
  });
  const info = (t: Tensor) => ({ id: t.id, shape: t.shape, dtype: t.dtype });
  return { backend, q, k, v, schedule, params, info };
}

/**
 * ORT's prepared call on q, k, v (`[B, Hq, 1, D]`, `[B, Hkv, N, D]`), on `threads` threads
 * (default: ORT's pool, all cores), or why it is absent.
 */
export async function ortCall(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  threads?: number,
): Promise<(() => Promise<unknown>) | { absent: string }> {
  const ort = await loadOrtCpu();
  if (!("prepare" in ort)) return ort;
  const [B, Hq, , D] = q.shape;
  const [, Hkv, N] = k.shape;
  return await ort.prepare({
    B,
    Hq,
    Hkv,
    N,
    D,
    dtype: "float32",
    q: await q.data(),
    k: await k.data(),
    v: await v.data(),
  }, threads);
}
