/**
 * Per-pass GPU timing of the WebGPU runtime (`timestamp-query`): passes get a timestamp
 * pair in a query set of the pending encoder, resolved at submission and read back on
 * request.
 *
 * @module
 */
import { LeanattnError } from "../../tensor/errors.ts";
import type { GpuErrors } from "./_runtime_errors.ts";
import type { GpuStorage } from "./_runtime_storage.ts";

/** One compute pass's GPU time. */
export interface PassTiming {
  /** The label given to `dispatch`. */
  label: string;
  /** Milliseconds between the pass's begin and end timestamps. */
  ms: number;
  /**
   * The raw begin timestamp (ns, the device's timestamp clock): a multi-pass op's GPU time is
   * the last pass's `endNs` minus the first pass's `startNs` (a pass may stamp its begin before
   * it waits for the previous pass, so summing `ms` can double-count).
   */
  startNs?: number;
  /** The raw end timestamp (ns, same clock as `startNs`). */
  endNs?: number;
}

interface TimingBatch {
  labels: string[];
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  staging: GPUBuffer;
}

/** The timestamp queries of one device. */
export class GpuProfiler {
  /** Whether dispatches are timed (see `GpuRuntime.setProfiling`). */
  on = false;
  /** Timing batches of the pending encoder, the last one filling (several while held). */
  #batches: TimingBatch[] = [];
  #timings: TimingBatch[] = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly errors: GpuErrors,
    private readonly storage: GpuStorage,
    /** Passes a batch holds: as many as the encoder records between submissions. */
    private readonly batchSize: number,
  ) {}

  /**
   * Begins a pass of its own with a timestamp pair in the current timing batch (a new batch
   * when that one is full), recorded under `label`. The caller ends the shared pass first.
   */
  timedPass(enc: GPUCommandEncoder, label: string): GPUComputePassEncoder {
    let batch = this.#batches.at(-1);
    if (!batch || batch.labels.length === this.batchSize) {
      this.#batches.push(batch = this.#newBatch());
    }
    const i = batch.labels.length;
    batch.labels.push(label);
    return enc.beginComputePass({
      label,
      timestampWrites: {
        querySet: batch.querySet,
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      },
    });
  }

  #newBatch(): TimingBatch {
    const count = 2 * this.batchSize;
    const querySet = this.errors.scoped(
      "timestamp query set",
      () => this.device.createQuerySet({ type: "timestamp", count }),
    );
    const resolve = this.storage.create(
      count * 8,
      GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      "timestamp resolve",
    );
    const staging = this.storage.create(
      count * 8,
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      "timestamp staging",
    );
    return { labels: [], querySet, resolve, staging };
  }

  /**
   * At a submission of `enc` (null: nothing was encoded): records the resolve of the pending
   * batches into it, to be read by {@link GpuProfiler.collect}.
   */
  submitting(enc: GPUCommandEncoder | null): void {
    const batches = this.#batches;
    this.#batches = [];
    if (!enc) return;
    for (const batch of batches) {
      const n = batch.labels.length * 2;
      enc.resolveQuerySet(batch.querySet, 0, n, batch.resolve, 0);
      enc.copyBufferToBuffer(batch.resolve, 0, batch.staging, 0, n * 8);
      this.#timings.push(batch);
    }
  }

  /**
   * GPU time of every pass submitted since the last call, in order; clears them. Throws
   * {@link DeviceLostError} when the device is destroyed or lost while the read is pending.
   */
  async collect(): Promise<PassTiming[]> {
    const batches = this.#timings;
    this.#timings = [];
    const out: PassTiming[] = [];
    try {
      for (const b of batches) {
        try {
          await b.staging.mapAsync(GPUMapMode.READ);
          const t = new BigUint64Array(b.staging.getMappedRange(), 0, b.labels.length * 2);
          b.labels.forEach((label, i) => {
            const ns = t[2 * i + 1] - t[2 * i];
            out.push({
              label,
              ms: Number(ns > 0n ? ns : 0n) / 1e6,
              startNs: Number(t[2 * i]),
              endNs: Number(t[2 * i + 1]),
            });
          });
          b.staging.unmap();
        } catch (e) {
          // wgpu rejects a pending map (or its unmap) with an OperationError when the device
          // goes away: say so as every later call will (DeviceLostError), else name it.
          this.errors.check();
          throw new LeanattnError(`webgpu readTimings failed: ${e}`);
        }
      }
    } finally {
      for (const b of batches) {
        b.staging.destroy();
        b.resolve.destroy();
        b.querySet.destroy();
      }
    }
    return out;
  }
}
