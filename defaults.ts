/**
 * The library's defaults, wired in one place above every layer: which backend creation
 * functions use when none is given, and `defaultBackend()`, which picks the best backend
 * here and calibrates its lean grid where the table of known GPUs cannot. This is the only
 * code that knows every backend.
 *
 * @module
 */
import type { Backend } from "./backends/backend.ts";
import { cpu } from "./backends/cpu/cpu_backend.ts";
import { chooseTensorBackend } from "./tensor/default_backend.ts";

let current: Backend | null = null;

/** The backend creation functions use when no `backend` option is given (initially CPU). */
export function getBackend(): Backend {
  return current ?? cpu();
}

/** Sets the default backend for creation functions. */
export function setBackend(backend: Backend): void {
  current = backend;
  chooseTensorBackend(backend);
}

/**
 * The best backend here: WebGPU when an adapter exists, else the CPU. Cached; also becomes
 * the default for creation functions. On a GPU the table of known multiprocessor counts does
 * not list, the default lean grid is measured once ({@link calibrateGrid}).
 *
 * When it falls back to the CPU it says why, once, with `console.warn` (the WebGPU error's
 * message, which names the fix), and {@link fallbackReason} returns the same text. Code
 * that means to run on the CPU can call `cpu()` instead and see no warning.
 */
export function defaultBackend(): Promise<Backend> {
  return chosen ??= (async () => {
    let b: Backend;
    try {
      const { webgpu } = await import("./backends/webgpu/webgpu_backend.ts");
      b = await webgpu();
      if (b.gridNeedsCalibration) {
        const { calibrateGrid } = await import("./attention/calibrate_grid.ts");
        await calibrateGrid(b).catch(() => {});
      }
    } catch (e) {
      reason = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      console.warn(`leanattn: defaultBackend() runs on the CPU: ${reason}`);
      b = cpu();
    }
    setBackend(b);
    return b;
  })();
}
let chosen: Promise<Backend> | null = null;
let reason: string | undefined;

/**
 * Why {@link defaultBackend} chose the CPU (the WebGPU error's name and message), or
 * `undefined` if it chose WebGPU or has not been awaited yet.
 *
 * @example
 * ```ts
 * import { defaultBackend, fallbackReason } from "./mod.ts";
 * const backend = await defaultBackend();
 * if (backend.name === "cpu") console.log(fallbackReason());
 * ```
 */
export function fallbackReason(): string | undefined {
  return reason;
}
