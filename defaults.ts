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
    } catch {
      b = cpu();
    }
    setBackend(b);
    return b;
  })();
}
let chosen: Promise<Backend> | null = null;
