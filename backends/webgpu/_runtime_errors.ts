/**
 * Deferred GPU error reporting for the runtime. Ops are synchronous but GPU errors arrive as
 * promises (`popErrorScope`): buffer creation, pipeline creation, bind groups and submits
 * run inside error scopes; a failure is stored and thrown (as {@link LimitError} or
 * {@link LeanattnError}) by the next op or read, instead of being printed as "uncaptured" and
 * silently skipping the dispatch.
 *
 * @module
 */
import { DeviceLostError, LeanattnError, LimitError } from "../../tensor/errors.ts";

/** The stored first error and the loss of one device. */
export class GpuErrors {
  #checks = new Set<Promise<void>>();
  #error: LeanattnError | null = null;
  #lost: string | null = null;

  constructor(private readonly device: GPUDevice) {}

  /** Why the device was lost or destroyed, or null while it works. */
  get lost(): string | null {
    return this.#lost;
  }

  /** Records the loss (the first reason given wins). */
  markLost(reason: string): void {
    this.#lost ??= reason;
  }

  /** Throws {@link DeviceLostError} after loss, or the first stored GPU error (once). */
  check(): void {
    if (this.#lost !== null) {
      throw new DeviceLostError(`WebGPU device is gone: ${this.#lost}`);
    }
    const e = this.#error;
    if (e) {
      this.#error = null;
      throw e;
    }
  }

  /** Stores `e` unless an earlier error is waiting to be thrown. */
  fail(e: LeanattnError): void {
    this.#error ??= e;
  }

  /** Runs `f` inside validation and out-of-memory error scopes; failures are stored. */
  scoped<T>(what: string, f: () => T, onError?: (e: LeanattnError) => void): T {
    const d = this.device;
    d.pushErrorScope("out-of-memory");
    d.pushErrorScope("validation");
    let r: T;
    try {
      r = f();
    } finally {
      const v = d.popErrorScope();
      const o = d.popErrorScope();
      const p: Promise<void> = Promise.all([v, o]).then(([ve, oe]) => {
        const e = oe
          ? new LimitError(`${what}: out of GPU memory: ${oe.message}`)
          : ve
          ? new LeanattnError(`${what}: ${ve.message}`)
          : null;
        if (e) {
          onError?.(e);
          this.fail(e);
        }
      }, (err) => {
        if (!this.#lost) this.fail(new LeanattnError(`${what}: ${err}`));
      }).finally(() => this.#checks.delete(p));
      this.#checks.add(p);
    }
    return r;
  }

  /** Waits for every outstanding error scope, then throws what `check` throws. */
  async settle(): Promise<void> {
    while (this.#checks.size) await Promise.all([...this.#checks]);
    this.check();
  }
}
