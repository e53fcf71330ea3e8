/**
 * The plan of a variant over K/V stored in parts (a WebGPU tensor over one buffer binding,
 * here with a small part size): each part's run keeps the keys' positions (`keyOffset`,
 * `positionLens`), leaves the sink out (merged once after the parts), and schedules only the
 * visible keys of its part; parts nobody sees do not run. The runs are checked by executing
 * them with the CPU kernels on slices of the same K/V and merging with `{ sinks }`: the
 * result is the float64 reference. (WebGPU itself refuses variant runs until its kernels
 * implement them.)
 */
import { ok as assert, strictEqual } from "node:assert/strict";
import { randn, tensor } from "../tensor/creation.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { leanAttentionPlan } from "../attention/lean.ts";
import { mergeAttentionStates } from "../attention/merge.ts";
import { cpu } from "../backends/cpu/cpu_backend.ts";
import { cpuAttention } from "../backends/cpu/attention.ts";
import { attentionTolerances, maxAbsDiff, referenceAttention } from "../testing/reference.ts";
import { ownWebgpu, webgpuBackend } from "./_backends.ts";

Deno.test({
  name: "variant over K/V in parts: runs keep positions, skip unseen parts, merge the sink once",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!(await webgpuBackend())) return;
    // K/V [1, 2, 700, 16] float32 (128 B a key) over 32 KiB: parts [0, 256), [256, 512), [512, 700).
    const gpu = await ownWebgpu({ partBytes: 32 * 1024 });
    const [B, Hq, Hkv, Sq, N, D] = [1, 4, 2, 5, 700, 16];
    const kvLens = [600];
    const sinks = [0.5, -1, 2, 0];
    const slopes = [0.01, 0.02, 0.04, 0.08];
    const host = cpu();
    const qc = randn([B, Hq, Sq, D], { seed: 41, backend: host });
    const kc = randn([B, Hkv, N, D], { seed: 42, backend: host });
    const vc = randn([B, Hkv, N, D], { seed: 43, backend: host });
    const bc = randn([1, 1, Sq, N], { seed: 44, backend: host });
    const [qd, kd, vd, bd] = await Promise.all([qc, kc, vc, bc].map((t) => t.data()));
    const onGpu = (x: Float32Array, shape: readonly number[]) => tensor(x, { shape, backend: gpu });
    const q = onGpu(qd, qc.shape), k = onGpu(kd, kc.shape), v = onGpu(vd, vc.shape);
    const bias = onGpu(bd, bc.shape);
    const temps: Tensor[] = [qc, kc, vc, bc, q, k, v, bias];
    try {
      const common = { causal: true, kvLens, window: { left: 100 }, softcap: 20 };
      const opts = { ...common, sinks, alibiSlopes: slopes, tileSize: 16, grid: 6 };
      const plan = leanAttentionPlan(q, k, v, { ...opts, bias });
      strictEqual(plan.parts?.map((p) => p.n1).join(), "256,512,700");
      // Rows at positions 595..599 see keys 495..599: parts 1 and 2 only (a part no row sees
      // is not run).
      strictEqual(plan.runs.map((r) => r.part).join(), "1,2");
      assert(plan.variant?.sinks && plan.runs.every((r) => !r.variant.sinks));
      strictEqual(plan.runs.map((r) => r.keyOffset).join(), "256,512");
      assert(plan.runs.every((r) => r.positionLens[0] === 600 && r.causal));
      const hull = plan.runs.map((r) => r.schedule.units.map((u) => [u.keyStart, u.keys]));
      strictEqual(JSON.stringify(hull), "[[[239,17],[239,17]],[[0,88],[0,88]]]");

      // Execute the runs with the CPU kernels on the same keys.
      const info = (t: Tensor) => ({ id: t.id, shape: t.shape, dtype: t.dtype });
      const sl = tensor(slopes, { backend: host });
      temps.push(sl);
      const inputs = { alibiSlopes: info(sl), bias: info(bc) };
      const states = plan.runs.map((r) => {
        const { n0, n1 } = plan.parts![r.part!];
        const part = (x: Float32Array) => {
          const y = new Float32Array(B * Hkv * (n1 - n0) * D);
          for (let h = 0; h < B * Hkv; h++) {
            y.set(x.subarray((h * N + n0) * D, (h * N + n1) * D), h * (n1 - n0) * D);
          }
          return tensor(y, { shape: [B, Hkv, n1 - n0, D], backend: host });
        };
        const kp = part(kd), vp = part(vd);
        temps.push(kp, vp);
        const o = cpuAttention(info(qc), info(kp), info(vp), r, inputs);
        const out = tensor(Float32Array.from(o.out), { shape: qc.shape, backend: host });
        const lse = tensor(Float32Array.from(o.lse), { shape: [B, Hq, Sq], backend: host });
        temps.push(out, lse);
        return { out, lse };
      });
      const merged = mergeAttentionStates(states, { sinks });
      temps.push(merged.out, merged.lse);
      const ref = referenceAttention({
        q: qd,
        k: kd,
        v: vd,
        B,
        Hq,
        Hkv,
        Sq,
        N,
        D,
        ...common,
        sinks,
        alibiSlopes: slopes,
        bias: { values: bd, shape: [1, 1, Sq, N] },
      });
      const tol = attentionTolerances(ref, N, "float32");
      const eo = maxAbsDiff(await merged.out.data(), ref.out);
      const el = maxAbsDiff(await merged.lse.data(), ref.lse);
      assert(eo <= tol.out && el <= tol.lse, `parts merged: out ${eo}, lse ${el}`);
    } finally {
      for (const t of temps) t.dispose();
      gpu.destroy();
    }
  },
});
