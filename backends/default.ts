/**
 * The process-wide default backend used by creation functions when none is given.
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import { cpu } from "./cpu/cpu_backend.ts";

let current: Backend | null = null;

/** The backend creation functions use when no `backend` option is given (initially CPU). */
export function getBackend(): Backend {
  return current ?? cpu();
}

/** Sets the default backend for creation functions. */
export function setBackend(backend: Backend): void {
  current = backend;
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
      const { webgpu } = await import("./webgpu/webgpu_backend.ts");
      b = await webgpu();
      // A GPU missing from the table of multiprocessor counts gets its lean grid by timing
      // (software adapters are for correctness: their grid does not matter).
      const { isSoftwareAdapter, parallelismOf } = await import("./webgpu/_gpus.ts");
      if (!parallelismOf(b.description).known && !isSoftwareAdapter(b.description)) {
        const { calibrateGrid } = await import("../attention/calibrate_grid.ts");
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
