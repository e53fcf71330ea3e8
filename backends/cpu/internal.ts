/**
 * The CPU backend's internal entry for the benchmark and the probes: the storage view and
 * the Web Worker attention path that measuring code drives directly. Not part of the public
 * API (`mod.ts` does not re-export it); names here may change between versions.
 *
 * @module
 */
export { cpuValues } from "./_storage.ts";
export {
  balancedRanges,
  closeAttentionWorkers,
  cpuAttentionParallel,
} from "./_attention_worker.ts";
