// Shared by probes: the median GPU time of one call (timestamp queries), the GPU at its top
// clock first.
import type { WebGpuBackend } from "../../backends/webgpu/webgpu_backend.ts";
import type { Tensor } from "../../mod.ts";
import { heatGpu } from "../_heater.ts";

/** Median GPU ms of `reps` calls of `f` (each call's passes, first begin to last end). */
export async function medianCallMs(
  gpu: WebGpuBackend,
  f: () => Tensor,
  reps: number,
): Promise<number> {
  await f().data(); // warm: pipelines
  await heatGpu(gpu.ctx.device, 100, 1024);
  gpu.setProfiling(true);
  const outs: Tensor[] = [];
  for (let i = 0; i < reps; i++) outs.push(f());
  const t = await gpu.readTimings();
  gpu.setProfiling(false);
  for (const o of outs) o.dispose();
  const per = t.length / reps;
  const all: number[] = [];
  for (let i = 0; i < reps; i++) all.push(t[i * per + per - 1].endNs! - t[i * per].startNs!);
  all.sort((a, b) => a - b);
  return all[Math.floor(reps / 2)] / 1e6;
}
