/**
 * The backend list every spec runs over: CPU always, WebGPU when an adapter exists. Under
 * `CI=true` a missing adapter is an error (CI installs a software adapter); elsewhere GPU
 * specs are skipped with a printed reason.
 */
import { cpu } from "../backends/cpu/cpu_backend.ts";
import type { Backend } from "../backends/backend.ts";
import type { WebGpuBackend, WebGpuOptions } from "../backends/webgpu/webgpu_backend.ts";

let cached: Promise<Backend[]> | null = null;

/**
 * Devices this test module made, destroyed when the module ends ("unload" fires between test
 * files): a real GPU driver runs out of devices over ~50 files whose devices (and pooled
 * buffers) outlive them (NVIDIA H100, 2026-12-06: requestAdapter() returned null after ~40
 * test files).
 */
const made: { destroy(): void }[] = [];
globalThis.addEventListener("unload", () => {
  for (const b of made.splice(0)) {
    try {
      b.destroy();
    } catch {
      // Already destroyed or lost: nothing to free.
    }
  }
});

/** A WebGPU backend of this test module's own, destroyed when the module ends. */
export async function ownWebgpu(opts?: WebGpuOptions): Promise<WebGpuBackend> {
  const { webgpu } = await import("../backends/webgpu/webgpu_backend.ts");
  const b = await webgpu(opts);
  made.push(b);
  return b;
}

async function load(): Promise<Backend[]> {
  const list: Backend[] = [cpu()];
  try {
    const gpu = await ownWebgpu();
    console.log(`WebGPU specs run on: ${gpu.description}`);
    list.push(gpu);
  } catch (e) {
    if (Deno.env.get("CI") === "true") {
      throw new Error(`CI=true but the WebGPU backend is unavailable: ${e}`);
    }
    console.warn(`skipping WebGPU specs: ${e instanceof Error ? e.message : e}`);
  }
  return list;
}

/**
 * Collects what earlier tests dropped without disposing and lets the finalizers release it,
 * so the live counts a test takes next move only with its own tensors (a finalizer runs
 * between tasks, so one that fires during a test's await would otherwise change the count
 * under it). Needs `gc()`: `deno task test` runs with `--expose-gc`; without it, nothing.
 */
export async function settleGarbage(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  gc();
  await new Promise((r) => setTimeout(r, 0));
}

/** CPU, then WebGPU when present. */
export function backends(): Promise<Backend[]> {
  return cached ??= load();
}

/** Fewer fast-check runs on software adapters. */
export function numRuns(backend: Backend, cpuRuns: number): number {
  return backend.name === "cpu" ? cpuRuns : Math.max(5, Math.ceil(cpuRuns / 4));
}

/**
 * Registers one Deno test per backend: `name [cpu]`, `name [webgpu]`. The body gets the
 * backend. Resources are not sanitized (the GPU device and its pollers outlive one test).
 */
export function describeBackends(name: string, body: (b: Backend) => Promise<void> | void) {
  for (const which of ["cpu", "webgpu"]) {
    Deno.test({
      name: `${name} [${which}]`,
      sanitizeResources: false,
      sanitizeOps: false,
      fn: async (t) => {
        const b = (await backends()).find((x) => x.name === which);
        if (!b) {
          console.warn(`  (no ${which} backend: skipped)`);
          return;
        }
        await settleGarbage();
        await body(b);
        void t;
      },
    });
  }
}

/**
 * The suite's WebGPU backend, or null (with a printed reason) where there is none: for specs
 * that only make sense on the GPU.
 */
export async function webgpuBackend(): Promise<WebGpuBackend | null> {
  const b = (await backends()).find((x) => x.name === "webgpu");
  if (!b) console.warn("  (no webgpu backend: skipped)");
  return (b as WebGpuBackend | undefined) ?? null;
}

/**
 * A test on the suite's WebGPU backend (none: nothing to test) that leaves its attention
 * tuning as it was, whatever `fn` sets.
 */
export function webgpuTest(name: string, fn: (b: WebGpuBackend) => Promise<void> | void): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const b = await webgpuBackend();
      if (!b) return;
      const before = b.attentionTuning;
      try {
        await fn(b);
      } finally {
        b.attentionTuning = before;
      }
    },
  });
}

/**
 * Runs `fn` on a WebGPU device of its own (destroyed afterwards), when the suite has a WebGPU
 * backend: for specs that change device-wide state (profiling, held submissions).
 */
export async function withOwnGpu(fn: (b: WebGpuBackend) => Promise<void>): Promise<void> {
  if (!(await webgpuBackend())) return;
  const { webgpu } = await import("../backends/webgpu/webgpu_backend.ts");
  const b = await webgpu();
  try {
    await fn(b);
  } finally {
    b.destroy();
  }
}
