/**
 * Helpers of the benchmark harness's tests (tests/bench_*_test.ts): assertions, and one WebGPU
 * adapter and device per test file for the GPU tests (skipped without an adapter, except under
 * `CI=true`).
 *
 * @module
 */
import { deepStrictEqual, match, ok } from "node:assert/strict";

export function assert(cond: unknown, msg?: string): asserts cond {
  ok(cond, msg);
}
export function assertEquals(got: unknown, want: unknown, msg?: string): void {
  deepStrictEqual(got, want, msg);
}
export function assertMatch(s: string, re: RegExp): void {
  match(s, re);
}
export function assertThrows(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  cls: new (...a: any[]) => Error,
  includes?: string,
): void {
  try {
    fn();
  } catch (e) {
    assert(e instanceof cls, `expected ${cls.name}, got ${e}`);
    if (includes) assert(e.message.includes(includes), `"${e.message}" lacks "${includes}"`);
    return;
  }
  throw new Error(`expected ${cls.name} to be thrown`);
}

// One adapter and device for every GPU test of a file (each test file has its own module
// instance), kept alive for the whole file: Deno's wgpu panics
// when a device outlives the JS adapter object it came from and ORT asks about the adapter.
let shared: Promise<{ adapter: GPUAdapter; device: GPUDevice } | null> | null = null;

function gpuDevice(): Promise<{ adapter: GPUAdapter; device: GPUDevice } | null> {
  return shared ??= (async () => {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) {
      if (Deno.env.get("CI") === "true") throw new Error("CI=true but no WebGPU adapter");
      return null;
    }
    const features = (["timestamp-query", "shader-f16"] as GPUFeatureName[]).filter((f) =>
      adapter.features.has(f)
    );
    return { adapter, device: await adapter.requestDevice({ requiredFeatures: features }) };
  })();
}

/** The shared device, or null after a printed skip (under `CI=true` no adapter throws). */
export async function gpuOrSkip(): Promise<GPUDevice | null> {
  const g = await gpuDevice();
  if (!g) console.warn("  (no WebGPU adapter: skipped)");
  return g?.device ?? null;
}

export const gpuTest = (name: string, fn: (d: GPUDevice) => Promise<void>) =>
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const d = await gpuOrSkip();
      if (d) await fn(d);
    },
  });
