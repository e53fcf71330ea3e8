/**
 * WebGPU attention kernels (placeholder: the kernels are being written).
 *
 * @module
 */
import type { AttentionParams, DataId, TensorInfo } from "../backend.ts";
import type { GpuContext } from "./context.ts";
import { LeanattnError } from "../../tensor/errors.ts";

/** Executes an attention schedule on the GPU. */
export function webgpuAttention(
  _ctx: GpuContext,
  _q: TensorInfo,
  _k: TensorInfo,
  _v: TensorInfo,
  _params: AttentionParams,
): { out: DataId; lse: DataId } {
  throw new LeanattnError("webgpu attention: not implemented yet");
}

/** Merges attention states in list order on the GPU. */
export function webgpuMergeStates(
  _ctx: GpuContext,
  _outs: readonly TensorInfo[],
  _lses: readonly TensorInfo[],
): { out: DataId; lse: DataId } {
  throw new LeanattnError("webgpu mergeStates: not implemented yet");
}
