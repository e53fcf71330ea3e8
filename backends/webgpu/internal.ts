/**
 * The WebGPU backend's internal entry for the benchmark, the probes and the tests: the pieces
 * below the public API (the runtime, the attention kernels' entry points, the parts layout)
 * that measuring code needs. Not part of the public API (`mod.ts` does not re-export it);
 * names here may change between versions.
 *
 * @module
 */
export { GpuRuntime } from "./_runtime.ts";
export { PART_ALIGN, partLayout } from "./_parts.ts";
export {
  type AttentionTuning,
  computeUnits,
  leanGridFor,
  planWebgpuAttention,
  runWebgpuAttention,
  webgpuAttention,
  type WebGpuAttentionLaunch,
  webgpuMergeStates,
} from "./attention/mod.ts";
